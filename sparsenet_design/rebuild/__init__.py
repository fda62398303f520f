"""Stage 4: the compact model a design spec describes, checked to run on the
example inputs and repaired by pinning where it does not."""
