"""What a stream tells its listeners as it goes: an interval was stored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class IntervalEvent:
    """An interval closed, was compressed and joined the memory (`StreamHandle.on_interval`)."""

    interval: int
    """The interval's id (a sequence number over the stream's life)."""
    t_start: float
    """Its first frame's time, seconds."""
    t_end: float
    """Its last frame's time, seconds."""
    num_frames: int
    ratio: int | None
    """The compression ratio it was stored at (None: kept raw)."""
    num_tokens: int
    """Tokens it holds in memory."""
    evicted: int
    """Older intervals dropped for good to make room for it (the GPU budget under
    ``drop_oldest``; the last tier's under ``offload``)."""
    offloaded: int = 0
    """Older intervals that left the GPU for the host or disk tier to make room for it, still
    held (``eviction="offload"``)."""


IntervalListener = Callable[[IntervalEvent], None]
