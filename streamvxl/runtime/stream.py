"""One stream's state: plain data, no model inside.

A `StreamState` is what a runtime operates on (`Runtime.ingest`, `Runtime.compress_next`,
`Runtime.answer`): the interval segmenter, the open interval's raw frames, the closed intervals
waiting for compression, the store of compressed intervals and the frame counter. It is what a
hub holds once per camera, and what persistence writes. Its `StreamSettings` are the stream's
configuration resolved against the model once: every fact (the window, the boundary, the budget
check, the stop ids) is settled there and nowhere else.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ..config import MemoryConfig
from ..errors import ConfigError
from ..frames import Gap
from ..gaps import GAP_HISTORY, GAP_MIN_SECONDS, step_gap
from ..intervals.boundary import BoundaryConfig
from ..intervals.segmenter import ClosedInterval, IntervalSegmenter
from ..memory.open_interval import OpenInterval
from ..memory.recall import DigestIndex, Scorer, frame_rows
from ..memory.store import IntervalRecord, MemoryStore
from ..memory.tiers import Archive
from ..model.encoder import window_plan
from ..model.layout import split_windows, window_layout
from .conditions import Condition
from .events import IntervalListener
from .job import IntervalJob

if TYPE_CHECKING:
    from .durable import RecordFile, StreamLog

log = logging.getLogger(__name__)

# Shapes: F frames, T tokens per frame, C hidden, E embedding width.


@dataclass(frozen=True)
class StreamSettings:
    """A `MemoryConfig` resolved against one model and tokenizer (`Runtime.settings`)."""

    config: MemoryConfig
    """The configuration as given."""
    boundary: BoundaryConfig
    """The interval cutting in force (the config's, else the model's trained one)."""
    window: int
    """Most raw tokens per encoder window."""
    tokens_per_frame: int
    prefix_ids: tuple[int, ...]
    """The prompt prefix (the sink), tokenized."""
    stop_ids: tuple[int, ...]
    """Tokens that end an answer."""
    scorer: Scorer | None = None
    """What ranks intervals for retrieval (`Retrieval.scorer`, the model's choice where the
    config leaves it open); None without retrieval."""
    looks_tag: str | None = None
    """``"<looks_wanted>#<weights digest>"``: what a log tags the stream's frame embeddings
    with, so a reopening under other weights of the same name drops them; None when the
    stream keeps none."""

    @property
    def looks_wanted(self) -> str | None:
        """The text-to-frame scorer whose frame embeddings the stream keeps
        (`Retrieval.frames`), or None when its retrieval scores keys only (or it has none)."""
        retrieval = self.config.retrieval
        if retrieval is None or self.scorer in (None, "keys"):
            return None
        return retrieval.frames

    @property
    def max_interval_tokens(self) -> int:
        """Most tokens one interval can retain (longest interval at the smallest ratio)."""
        raw = self.boundary.max_frames * self.tokens_per_frame
        policy = self.config.ratio_policy
        if policy is None:
            return raw
        r = min(policy.ratios)
        return sum(window_layout(e - s, r, self.config.remainder).num_vst
                   for s, e in split_windows(raw, self.window))


@dataclass
class StreamState:
    """Everything one stream's memory is, apart from the model (see the module docstring)."""

    settings: StreamSettings
    store: MemoryStore
    segmenter: IntervalSegmenter
    open: OpenInterval = field(default_factory=OpenInterval)
    pending: deque[IntervalJob] = field(default_factory=deque)
    """Closed intervals waiting for (or in) compression, oldest first."""
    frames_seen: int = 0
    """Frames admitted so far; the next frame's index."""
    gaps: list[Gap] = field(default_factory=list)
    """Stretches the memory did not see, oldest first: reported by a live source
    (`Frame.gap`), or found between two frames further apart than `streamvxl.gaps.gap_threshold`."""
    last_time: float | None = None
    """Timestamp of the newest admitted frame."""
    time_origin: float | None = None
    """Timestamp of the stream's first admitted frame: what frame time stamps count from
    (`Runtime.stamped`); kept by its log, so a reopened memory stamps on the same clock."""
    spacing: deque[float] = field(default_factory=lambda: deque(maxlen=GAP_HISTORY))
    """The last intervals between admitted frames, seconds (the automatic gap threshold)."""
    conditions: list[Condition] = field(default_factory=list)
    """Watched yes/no questions, checked on every interval as it is stored."""
    listeners: list[IntervalListener] = field(default_factory=list)
    """Called with an `IntervalEvent` for every interval as it is stored."""
    stored: list[tuple[IntervalRecord, int, int]] = field(default_factory=list)
    """Intervals stored (with how many older ones they dropped for good, and moved off the
    GPU) whose listeners and watch conditions have not run yet (`Runtime.announce`)."""
    log: StreamLog | None = None
    """Where closed intervals are written before they count as stored (`MemoryConfig.log_dir`)."""
    resumed_wall: float | None = None
    """Reopened from a log: `time.time()` of its last record. The first frame after it records
    the time the memory was closed as a gap."""
    archive: Archive | None = None
    """Intervals that left the GPU budget, on the host and on disk (``eviction="offload"``)."""
    digests: DigestIndex | None = None
    """Key digests of every interval held, on any tier (`MemoryConfig.retrieval`)."""
    recall_store: MemoryStore | None = None
    """Where a question's retrieved intervals are packed (allocated once, at the retrieval
    budget)."""
    snapshot: RecordFile | None = None
    """Reopened from a snapshot under ``offload``: the file its disk tier reads from."""

    def close_files(self) -> None:
        """Close the log and the snapshot the disk tier reads (the stream is going away)."""
        try:
            if self.log is not None:
                self.log.close()
        finally:
            if self.snapshot is not None:
                self.snapshot.close()

    def admit(self, tokens: torch.Tensor, embeddings: torch.Tensor, stamps: list[float],
              reported: Sequence[Gap | None] | None = None,
              dropped: Sequence[int] | None = None, looks: torch.Tensor | None = None) -> None:
        """Add frames that went through the vision tower: tokens (F, T, C) on the device,
        embeddings (F, E) float32 on the CPU, with the outage each one's source reported just
        before it and how many frames the queue dropped just before it, and their
        text-to-frame embeddings (F, E') when retrieval scores frames
        (`StreamSettings.looks_wanted`).
        Intervals they close join `pending`; gaps join `gaps`.

        Raises:
            FrameError: the segmenter refused a frame's embedding (zero, NaN); that frame and
                the ones after it are not added, those before it are.
            ConfigError: the ratio policy chose a ratio outside its own set.
        """
        for i, ts in enumerate(stamps):
            # the segmenter validates the embedding and changes nothing when it refuses it
            closed = self.segmenter.push(self.frames_seen, embeddings[i])
            if self.time_origin is None:
                self.time_origin = ts
            self._note_gap(ts, reported[i] if reported else None, dropped[i] if dropped else 0)
            self.open.append(tokens[i], embeddings[i], ts,
                             None if looks is None else looks[i])
            self.frames_seen += 1
            for c in closed:
                self.pending.append(self._job(c))

    def flush(self) -> None:
        """Close the open interval (end of stream): its frames join `pending`."""
        for c in self.segmenter.flush():
            self.pending.append(self._job(c))

    def oldest_held(self) -> IntervalRecord | None:
        """The oldest interval held on any tier (None: none)."""
        if self.archive is not None and self.archive.entries:
            return self.archive.entries[0].record
        return self.store.records[0] if self.store.records else None

    def forget_gaps_before(self, t: float) -> None:
        """Drop the gaps that ended before ``t`` (the oldest moment the memory still holds)."""
        self.gaps = [g for g in self.gaps if g.end >= t]

    def _note_gap(self, ts: float, reported: Gap | None, dropped: int) -> None:
        last = self.last_time
        if self.resumed_wall is not None:  # the first frame since the memory was reopened
            self.resumed_wall = None
            if reported is None and last is not None and ts - last > GAP_MIN_SECONDS:
                reported = Gap(last, ts, "the memory was not running")
        if reported is None:  # the automatic rule (`streamvxl.gaps`), which training shares
            reported = step_gap(last, ts, self.spacing, self.settings.config.gap_seconds,
                                dropped)
        if reported is not None:
            self.gaps.append(reported)
        self.last_time = ts

    def reset(self) -> None:
        """Forget every frame; the store keeps its sink (the caller re-checks it)."""
        sink = self.store.sink_tokens
        keys = self.store.keys()[:, :, :, :sink].clone()
        values = self.store.values()[:, :, :, :sink].clone()
        self.store.clear()
        if sink:
            self.store.set_sink(keys, values)
        if self.archive is not None:
            self.archive.clear()
        if self.digests is not None:
            self.digests.clear()
        self.segmenter.reset()
        self.open.clear()
        self.pending.clear()
        self.frames_seen = 0
        self.gaps = []
        self.last_time = None
        self.time_origin = None
        self.resumed_wall = None
        self.spacing.clear()
        if self.log is not None:
            self.log.reset()

    def raw_parts(self) -> list[torch.Tensor]:
        """(n, C) raw tokens of each span not yet compressed, in stream order: the pending
        intervals', then the open interval's."""
        parts = [job.tokens[0] for job in self.pending]
        open_tokens = self.open.raw_tokens()
        if open_tokens is not None:
            parts.append(open_tokens)
        return parts

    def raw_looks(self) -> list[torch.Tensor | None]:
        """Text-to-frame embeddings (k, E') of each span `raw_parts` lists (None where not
        kept)."""
        out = [job.looks for job in self.pending]
        if len(self.open):
            out.append(self.open.looks())
        return out

    def raw_tokens(self) -> torch.Tensor | None:
        """(N, C) every frame not yet compressed, in stream order (`raw_parts` joined); None
        when there are none. Questions read them uncompressed."""
        parts = self.raw_parts()
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _job(self, closed: ClosedInterval) -> IntervalJob:
        span = self.open.take(closed.num_frames)
        policy = self.settings.config.ratio_policy
        ratio = None if policy is None else policy.choose(closed.similarities)
        if policy is not None and ratio not in policy.ratios:
            raise ConfigError(f"ratio policy {policy!r} chose {ratio}, outside its ratios "
                              f"{policy.ratios}; the budget check relies on that set")
        raw = span.tokens.reshape(1, -1, span.tokens.shape[-1])  # (1, F*T, C)
        plan = window_plan(raw.shape[1], ratio, self.settings.window,
                           self.settings.config.remainder)
        retrieval = self.settings.config.retrieval
        looks = None
        if span.looks is not None and retrieval is not None:
            looks = span.looks[frame_rows(closed.num_frames, retrieval.frame_rows)].half()
        return IntervalJob(closed, raw, span.timestamps[0], span.timestamps[-1], ratio, plan,
                           embedding=span.embeddings.float().mean(0).cpu(), looks=looks)
