"""Stage 3: densities, √d widths per channel group, and the design spec that
records them."""
