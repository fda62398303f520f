"""Shared by the example model files: the toy-scale switch used by tests and docs.

``SDESIGN_TOY=1`` in the environment makes every example use a few dozen
samples, so that a whole ``sdesign design`` runs in seconds (tests and the
docs' command check set it). Real runs leave it unset.
"""
import os


def toy() -> bool:
    return os.environ.get("SDESIGN_TOY", "").strip() not in ("", "0", "false", "no")


def shrink(n: int, toy_n: int) -> int:
    """``n`` samples, or ``toy_n`` at toy scale."""
    return min(n, toy_n) if toy() else n
