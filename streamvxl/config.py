"""`MemoryConfig`: how one stream's memory cuts, compresses, bounds, queues and answers."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal, get_args

from .errors import ConfigError
from .intervals.boundary import BoundaryConfig
from .intervals.ratio import RatioPolicy, as_ratio_policy
from .memory.recall import Retrieval
from .memory.store import EvictionPolicy
from .model.layout import RemainderRule
from .persist.durability import Durability
from .prompt import PromptTemplate

OverflowPolicy = Literal["block", "drop_oldest", "drop_newest"]
"""What `push` does when a stream's queue is full: wait for room, drop the oldest queued frame,
or drop the frame being pushed. Drops are counted (`MemoryStats.frames_dropped`)."""


@dataclass(frozen=True)
class MemoryConfig:
    """Settings of one video memory. Every field has a working default.

    Example:
        >>> from streamvxl import MemoryConfig, DensityRatio
        >>> cfg = MemoryConfig(ratio=DensityRatio((4, 8, 16)), token_budget=4096)
    """

    ratio: int | RatioPolicy | None = 8
    """Compression ratio (one VST per r raw tokens), a policy choosing it per interval
    (`DensityRatio`), or None to keep every raw token's K/V (the uncompressed baseline)."""
    window: int | None = None
    """Most raw tokens per interval-encoder forward; None takes the checkpoint's
    ``beacon_window`` (Video-XL: 1440 = 10 frames of 144 tokens)."""
    boundary: BoundaryConfig | None = None
    """Online interval cutting: depth-score threshold, window, min/max frames per interval.
    None: the settings the model was trained with when it names them (streamvxl-tiny: window 2,
    4 to 16 frames), else ``BoundaryConfig()``."""
    token_budget: int | None = None
    """Hard cap on retained tokens (sink + VSTs); None is unbounded. The K/V storage is
    allocated once at the budget when the stream starts, so it stays flat."""
    eviction: EvictionPolicy = "drop_oldest"
    """What makes room when a new interval does not fit the budget: ``"drop_oldest"`` forgets
    the oldest intervals; ``"offload"`` moves them to host memory (``host_budget``), then to
    disk (the log, with ``log_dir``), and each question retrieves what it needs from every
    tier (``retrieval``)."""
    host_budget: int | None = None
    """With ``eviction="offload"``: most interval tokens kept in host memory below the GPU;
    the oldest beyond it move to disk (with ``log_dir``) or, without a log, are dropped.
    None: no limit."""
    retrieval: Retrieval | None = None
    """How a question picks the intervals it reads (`Retrieval`: a token budget, the share
    kept for the newest). None: every interval on the GPU, and with ``offload`` a default
    `Retrieval()` over all tiers."""
    remainder: RemainderRule = "summarize"
    """VSTs when r does not divide a window: 'summarize' (an extra VST covers the tail; no raw
    token is lost) or 'drop' (the reference's rule: the tail is not summarised)."""
    max_question_tokens: int = 512
    """Longest question accepted, in tokens."""
    prompt: PromptTemplate = field(default_factory=PromptTemplate)
    """Chat template around the video."""
    queue_frames: int = 64
    """Frames a stream's queue holds before its overflow policy acts (background mode)."""
    gap_seconds: float | None = None
    """Two frames further apart than this (seconds) make a gap in memory ("no frames came"):
    questions are told of it. None: 4x the median of the recent intervals, at least 2 s. Live
    sources report their outages themselves (`Frame.gap`)."""
    overflow: OverflowPolicy | None = None
    """When the queue is full: ``"block"``, ``"drop_oldest"`` or ``"drop_newest"``. None:
    ``drop_oldest`` for frames of a live source (``Frame.live``: cameras, network streams),
    ``block`` for everything else; `VideoMemory.extend` always blocks."""

    log_dir: str | os.PathLike[str] | None = None
    """A directory for the memory's append-only interval log: each closed interval is written
    there before it counts as stored, so a restarted process reopens the memory with
    `VideoMemory.open` (losing at most the open interval). The directory must not hold a log
    already (open that one instead). None: the memory lives in this process only."""
    durability: Durability = field(default_factory=Durability)
    """When the log is forced to disk (fsync) and what that survives."""

    def __post_init__(self) -> None:
        if self.log_dir is not None:
            if not isinstance(self.log_dir, (str, os.PathLike)) or not os.fspath(self.log_dir):
                raise ConfigError(f"MemoryConfig.log_dir must be a directory path or None, got "
                                  f"{self.log_dir!r}")
            object.__setattr__(self, "log_dir", os.fspath(self.log_dir))
        if not isinstance(self.durability, Durability):
            raise ConfigError(f"MemoryConfig.durability must be a Durability, got "
                              f"{type(self.durability).__name__}")
        if self.ratio is not None:
            object.__setattr__(self, "ratio", as_ratio_policy(self.ratio))
        for name, optional in (("window", True), ("token_budget", True),
                               ("max_question_tokens", False), ("queue_frames", False)):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"MemoryConfig.{name} must be a positive int"
                                  f"{' or None' if optional else ''}, got {value!r}")
        if self.eviction not in get_args(EvictionPolicy):
            raise ConfigError(f"MemoryConfig.eviction must be one of "
                              f"{get_args(EvictionPolicy)}, got {self.eviction!r}")
        if self.eviction == "offload" and self.token_budget is None:
            raise ConfigError("MemoryConfig.eviction='offload' moves intervals out of a GPU "
                              "budget: set token_budget too")
        if self.host_budget is not None and (
                isinstance(self.host_budget, bool) or not isinstance(self.host_budget, int)
                or self.host_budget < 0):
            raise ConfigError(f"MemoryConfig.host_budget must be a number of tokens >= 0 or "
                              f"None, got {self.host_budget!r}")
        if self.retrieval is not None and not isinstance(self.retrieval, Retrieval):
            raise ConfigError(f"MemoryConfig.retrieval must be a Retrieval or None, got "
                              f"{type(self.retrieval).__name__}")
        if self.eviction == "offload" and self.retrieval is None:
            object.__setattr__(self, "retrieval", Retrieval())
        if self.remainder not in ("summarize", "drop"):
            raise ConfigError(f"MemoryConfig.remainder must be 'summarize' or 'drop', got "
                              f"{self.remainder!r}")
        if self.boundary is not None and not isinstance(self.boundary, BoundaryConfig):
            raise ConfigError(f"MemoryConfig.boundary must be a BoundaryConfig or None, got "
                              f"{type(self.boundary).__name__}")
        if self.gap_seconds is not None and (
                isinstance(self.gap_seconds, bool) or not isinstance(self.gap_seconds, (int, float))
                or not math.isfinite(self.gap_seconds) or self.gap_seconds <= 0):
            raise ConfigError(f"MemoryConfig.gap_seconds must be a positive number of seconds or "
                              f"None, got {self.gap_seconds!r}")
        if self.overflow is not None and self.overflow not in get_args(OverflowPolicy):
            raise ConfigError(f"MemoryConfig.overflow must be one of {get_args(OverflowPolicy)} "
                              f"or None, got {self.overflow!r}")
        if not isinstance(self.prompt, PromptTemplate):
            raise ConfigError(f"MemoryConfig.prompt must be a PromptTemplate, got "
                              f"{type(self.prompt).__name__}")

    @property
    def ratio_policy(self) -> RatioPolicy | None:
        return self.ratio  # normalised in __post_init__
