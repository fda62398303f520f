"""``python -m sparsenet_design.cli`` (what torchrun launches)."""
from . import main

main()
