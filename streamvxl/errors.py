"""The exception hierarchy. Every message says what went wrong and what to do about it.

Each error also derives from the built-in it refines (``ValueError``, ``OSError``, ...), so code
that already catches those keeps working.
"""

from __future__ import annotations


class StreamVXLError(Exception):
    """Base class of every error streamvxl raises on purpose."""


class ConfigError(StreamVXLError, ValueError):
    """A configuration value is invalid; the message names the field and the fix."""


class FrameError(StreamVXLError, ValueError):
    """A pushed frame has the wrong type, shape, dtype or values (e.g. NaN)."""


class QuestionError(StreamVXLError, ValueError):
    """A question is empty, not a string, or longer than the model accepts."""


class CheckpointError(StreamVXLError, OSError):
    """A model folder is missing files or keys, or holds weights of the wrong shape."""


class SourceError(StreamVXLError, OSError):
    """A video source cannot be opened or stopped delivering frames."""


class MemoryFileError(StreamVXLError, OSError):
    """A saved memory file is missing, corrupt, or from an incompatible model."""


class ModelMismatchError(MemoryFileError):
    """A memory was written under another model, dtype or prompt than the one opening it; the
    message names both."""


class MissingDependencyError(StreamVXLError, ImportError):
    """An optional dependency is needed for this feature; the message names the pip extra."""


class ClosedError(StreamVXLError, RuntimeError):
    """The memory, stream or hub was closed; open a new one."""


class WorkerError(StreamVXLError, RuntimeError):
    """The runtime's worker thread stopped on an unexpected error; the memory cannot go on."""


__all__ = [
    "CheckpointError",
    "ClosedError",
    "ConfigError",
    "FrameError",
    "MemoryFileError",
    "MissingDependencyError",
    "ModelMismatchError",
    "QuestionError",
    "SourceError",
    "StreamVXLError",
    "WorkerError",
]
