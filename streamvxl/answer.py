"""What `VideoMemory.ask` returns, and what `VideoMemory.stats` reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .frames import Gap


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
class Citation:
    """A span of the stream an answer drew on, and how much (`Answer.cited`)."""

    t_start: float
    """Timestamp of the span's first frame, seconds."""
    t_end: float
    """Timestamp of its last frame, seconds."""
    weight: float
    """Its share of the attention the answer's tokens paid to the video, times its share of
    the question's text-to-frame match where retrieval scores frames -- for a question that
    asks when something appeared or left (`Runtime.moment_probe`), weighed up where the named
    thing's stay on screen begins or ends (all spans in context sum to 1;
    `streamvxl.runtime.citations`)."""
    interval: int | None
    """Id of the stored interval (`IntervalRecord.id`); None for frames not yet compressed."""
    match: float | None = None
    """How well the span's frames match the question's words: the best cosine between the
    question's text embedding and its frames' (`Retrieval.scorer` "frames" / "both"); None
    when the memory scores keys only."""


@dataclass(frozen=True)
class Timings:
    """Where the time of one `ask` went, seconds."""

    prefill: float
    """Memory into the decode cache, then the open frames and the question: up to the first
    token."""
    decode: float
    """The tokens after the first."""
    total: float
    """From the call to the last token: ``wait + prefill + decode``."""
    wait: float = 0.0
    """From the call until the runtime took the question (the step in progress, questions
    ahead of it, and with ``wait=True`` the backlog)."""
    retrieve: float = 0.0
    """Part of ``prefill``: choosing and gathering the intervals the question reads
    (`MemoryConfig.retrieval`; about zero without it)."""
    cite: float = 0.0
    """After the last token: ranking what the answer drew on (`Answer.cited`); not in
    ``total``."""

    @property
    def first_token(self) -> float:
        """From the call to the first token: what a caller waits before an answer starts."""
        return self.wait + self.prefill


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
    gaps: tuple[Gap, ...] = ()
    """What the memory did not see within its time range, told to the model before the
    question (`PromptTemplate.gap`)."""
    cited: tuple[Citation, ...] = ()
    """The spans the answer drew on, most first: each span in context (``intervals``) with
    the share of the answer's attention it received, weighed by how well its frames match the
    question's words where retrieval scores frames -- or show the moment asked, for "when did
    ... appear / leave?" (``ask(cite=False)``: empty)."""
    candidates: int = 0
    """Intervals the memory held on every tier when asked; ``intervals`` lists those the
    question read (all of them unless retrieval chose)."""


@dataclass(frozen=True)
class MemoryStats:
    """A snapshot of a memory's size, history and backlog."""

    frames_seen: int
    """Frames in memory so far: through the vision tower, raw or compressed."""
    intervals_closed: int
    """Intervals closed and stored (evicted ones included)."""
    intervals_in_memory: int
    """Intervals in the GPU budget."""
    intervals_evicted: int
    """Intervals forgotten for good (with ``eviction="offload"``: past the last tier)."""
    open_frames: int
    """Frames of the interval still open (raw tokens, seen by questions)."""
    sink_tokens: int
    memory_tokens: int
    """Retained tokens: sink + VSTs (what the budget counts)."""
    token_budget: int | None
    memory_bytes: int
    """Bytes of the retained K/V."""
    allocated_bytes: int
    """Bytes the K/V storage holds (the whole budget when one is set)."""
    intervals_pending: int = 0
    """Intervals closed but not yet compressed (their frames are seen raw meanwhile)."""
    frames_pending: int = 0
    """Frames of those intervals."""
    frames_pushed: int = 0
    """Frames accepted by ``push`` / ``extend`` (queued, dropped or in memory)."""
    frames_dropped: int = 0
    """Frames the overflow policy dropped: never seen by the memory."""
    queue_depth: int = 0
    """Frames waiting for the vision tower."""
    lag: float = 0.0
    """Seconds of stream time between the newest frame pushed and the newest in memory."""
    gaps: tuple[Gap, ...] = ()
    """Stretches the memory did not see (camera offline, stalled, no frames), oldest first."""
    intervals_logged: int | None = None
    """Intervals whose records are in the memory's log (`MemoryConfig.log_dir`): what a
    restart keeps. At most one behind ``intervals_closed`` (the record being written); None
    without a log."""
    intervals_on_host: int = 0
    """Intervals offloaded from the GPU to host memory (``eviction="offload"``)."""
    intervals_on_disk: int = 0
    """Intervals offloaded to disk (the log), read back when a question retrieves them."""
    host_bytes: int = 0
    """Bytes of the K/V held in host memory (what ``host_budget`` bounds)."""
    digest_bytes: int = 0
    """Host bytes of the retrieval index: a key digest per interval held on any tier (not in
    ``host_budget``: 8 key rows per kv head in half the layers, about 1/70 of the K/V of a
    16-frame interval at Video-XL-7B scale), and its frames' text-to-frame embeddings when
    retrieval scores frames."""
