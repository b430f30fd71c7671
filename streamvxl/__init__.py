"""streamvxl: a streaming video memory for real-time agents.

Frames stream in; the memory cuts them into intervals online, compresses each closed interval
into the key/value cache of a few visual summarization tokens (Video-XL), keeps a bounded store
of them, and answers questions at any moment.

Example:
    >>> from streamvxl import VideoMemory, open_source      # doctest: +SKIP
    >>> mem = VideoMemory.from_pretrained("VideoXL_weight_8")  # doctest: +SKIP
    >>> for frame in open_source("lot.mp4", fps=1):            # doctest: +SKIP
    ...     mem.push(frame)
    >>> print(mem.ask("When did the red car leave?").text)     # doctest: +SKIP
"""

from .answer import Answer, IntervalSpan, MemoryStats
from .config import MemoryConfig
from .errors import (
    CheckpointError,
    ConfigError,
    FrameError,
    QuestionError,
    SourceError,
    StreamVXLError,
)
from .frames import Frame
from .intervals import BoundaryConfig, DensityRatio, FixedRatio
from .sources import open_source
from .video_memory import VideoMemory

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "BoundaryConfig",
    "CheckpointError",
    "ConfigError",
    "DensityRatio",
    "FixedRatio",
    "Frame",
    "FrameError",
    "IntervalSpan",
    "MemoryConfig",
    "MemoryStats",
    "QuestionError",
    "SourceError",
    "StreamVXLError",
    "VideoMemory",
    "open_source",
]
