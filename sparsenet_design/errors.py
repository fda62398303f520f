"""User-facing errors. Each carries a one-paragraph message that says what is
wrong and what to do; the CLI prints it without a traceback."""
from __future__ import annotations


class SdesignError(Exception):
    """Base class for every error the toolkit raises on purpose."""


class TraceError(SdesignError):
    """The model could not be traced into a graph."""


class SpecMismatchError(SdesignError):
    """A design spec does not fit the model it is applied to."""


class ModelFileError(SdesignError):
    """A user's ``model.py`` is missing, broken or incomplete."""


class CheckpointError(SdesignError):
    """A weights file, checkpoint or run folder is corrupt or does not match."""


class TrainingError(SdesignError):
    """Training cannot go on (e.g. the loss became NaN)."""
