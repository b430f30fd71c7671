"""streamvxl: a streaming video memory for real-time agents.

Frames stream in; the memory cuts them into intervals online, compresses each closed interval
into the key/value cache of a few visual summarization tokens (Video-XL), keeps a bounded store
of them, and answers questions at any moment.

Example:
    >>> from streamvxl import VideoMemory, open_source      # doctest: +SKIP
    >>> mem = VideoMemory.from_pretrained("VideoXL_weight_8")  # doctest: +SKIP
    >>> for frame in open_source("lot.mp4", fps=1):            # doctest: +SKIP
    ...     mem.push(frame)                                     # returns at once
    >>> print(mem.ask("When did the red car leave?").text)     # doctest: +SKIP
"""

from .answer import Answer, IntervalSpan, MemoryStats
from .config import MemoryConfig
from .errors import (
    CheckpointError,
    ClosedError,
    ConfigError,
    FrameError,
    MemoryFileError,
    ModelMismatchError,
    QuestionError,
    SourceError,
    StreamVXLError,
    WorkerError,
)
from .frames import Frame, Gap
from .intervals import BoundaryConfig, DensityRatio, FixedRatio
from .persist import Durability
from .preprocess import Preprocessor
from .runtime import Hub, Runtime, RuntimeConfig, StreamHandle
from .runtime.conditions import WatchEvent
from .runtime.events import IntervalEvent
from .sources import Reconnect, open_source
from .video_memory import VideoMemory

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "BoundaryConfig",
    "CheckpointError",
    "ClosedError",
    "ConfigError",
    "DensityRatio",
    "Durability",
    "FixedRatio",
    "Frame",
    "FrameError",
    "Gap",
    "Hub",
    "IntervalEvent",
    "IntervalSpan",
    "MemoryConfig",
    "MemoryFileError",
    "MemoryStats",
    "ModelMismatchError",
    "Preprocessor",
    "QuestionError",
    "Reconnect",
    "Runtime",
    "RuntimeConfig",
    "SourceError",
    "StreamHandle",
    "StreamVXLError",
    "VideoMemory",
    "WatchEvent",
    "WorkerError",
    "open_source",
]
