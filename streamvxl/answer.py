"""What `VideoMemory.ask` returns, and what `VideoMemory.stats` reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class IntervalSpan:
    """A span of the stream that an answer drew on."""

    t_start: float
    """Timestamp of the first frame, seconds."""
    t_end: float
    """Timestamp of the last frame, seconds."""
    num_frames: int
    """Frames in the span."""
    ratio: int | None
    """Compression ratio of the span; None for raw tokens (the open interval, or no compression)."""
    compressed: bool
    """False for the still-open interval, which the question saw uncompressed."""


@dataclass(frozen=True)
class Timings:
    """Where the time of one `ask` went, seconds."""

    prefill: float
    decode: float
    total: float


@dataclass(frozen=True)
class Answer:
    """An answer with its evidence."""

    text: str
    """The decoded answer (special tokens removed)."""
    token_ids: list[int]
    """Generated ids, including a final stop token if one ended the answer."""
    intervals: list[IntervalSpan]
    """The time spans in the context the answer was generated from, oldest first."""
    timings: Timings
    """Prefill / decode / total seconds."""
    context_tokens: int
    """Tokens attended to: sink + VSTs + open raw tokens + question."""
    finished: bool
    """True if a stop token ended the answer, False if ``max_new_tokens`` cut it."""
    logits: torch.Tensor | None = field(default=None, repr=False)
    """(n, V) float32 logits each generated token was picked from, if ``output_logits``."""


@dataclass(frozen=True)
class MemoryStats:
    """A snapshot of a memory's size and history."""

    frames_seen: int
    intervals_closed: int
    intervals_in_memory: int
    intervals_evicted: int
    open_frames: int
    sink_tokens: int
    memory_tokens: int
    """Retained tokens: sink + VSTs (what the budget counts)."""
    token_budget: int | None
    memory_bytes: int
    """Bytes of the retained K/V."""
    allocated_bytes: int
    """Bytes the K/V storage holds (the whole budget when one is set)."""
