"""``sdesign``: the command line.

    sdesign prune model.py --lr 0.1 --lam 1e-5 --epochs 10 --out RUN/
    sdesign report RUN/
    sdesign reconstruct RUN/ --strategy min --out DESIGN/
    sdesign train model.py --spec DESIGN/spec.json --epochs 20 --out TRAINED/
    sdesign evaluate model.py --spec DESIGN/spec.json --weights TRAINED/weights.safetensors
    sdesign design model.py --out RUN/          # all of the above in one go
    sdesign prune model.py --nproc 4 ...        # on 4 processes (torchrun; docs/distributed.md)

Every failure the toolkit anticipates is an ``SdesignError``: printed as one
paragraph, no traceback, exit code 1 (usage errors: 2).
"""
from __future__ import annotations

from . import design, info, prune, report, train  # noqa: F401  (each registers its commands on main)
from .app import main

__all__ = ["main"]


def _register_plugins() -> None:
    from ..plugins import cli_commands

    for name, command in cli_commands():
        if name not in main.commands:
            main.add_command(command, name)


_register_plugins()
