"""The one error type every reader and writer in :mod:`pipeline` raises for bad data."""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad or missing input data, naming the file and the problem.

    Raised for a missing file, an unreadable or corrupt image, a label map whose size
    differs from its image, an array of the wrong shape, NaN coordinates, a pose without
    a usable torso, and similar.  Subclasses :class:`ValueError`, so callers that only
    know the standard library can still catch it.

    Attributes:
        path: the offending file (or folder), or ``None`` when the data came from memory.
        problem: a one-line, human-readable description of what is wrong.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = "<in memory>" if path is None else str(path)
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # keep picklable across process/Dask boundaries
        return (type(self), (self.path, self.problem))


class ConfigError(ValueError):
    """A run was asked for something it cannot do: an unknown preset or profile, a missing
    option, CUDA requested on a machine without it, inconsistent settings.  The message is
    one line meant for the user; the CLI prints it without a traceback."""


class CheckpointError(DataError):
    """A file given as a checkpoint is missing, empty, truncated, not a partsynth
    checkpoint, or a checkpoint of another kind (a refiner where a parser is expected)."""
