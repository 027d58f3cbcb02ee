"""The ways a training run stops early, each a ``seglab.errors.SeglabError`` that the command
line reports in one line."""

from __future__ import annotations

from seglab.errors import SeglabError


class TrainingError(SeglabError, RuntimeError):
    """A run could not start or stopped early; the message says why and what to do."""


class RunExistsError(TrainingError):
    """The output folder holds a finished run (or files that are not a run)."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(TrainingError):
    """Ctrl-C: a checkpoint was written and the run can be resumed."""
