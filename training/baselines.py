"""Video memories at equal budgets: the VST method and the baselines it is measured against.

Every builder turns one encoded video into the memory a question is answered from: a
`MemoryStore` filled through the product's `Runtime` (sink = the prompt prefix, then the video's
retained K/V). The video goes through the runtime's own vision path (`Runtime.encode_images`)
and the product's interval segmenter. All four use the *same* intervals and the same encoder
windows, so at ratio r they differ only in what they keep:

- ``vst`` (the method): each interval compressed at ratio r; keeps the VSTs' K/V, one VST after
  every r raw tokens of each window (ceil for a window's tail: the "summarize" rule).
- ``avg_pool``: each window's raw tokens averaged in groups of r consecutive tokens -- exactly
  the groups the VSTs follow, so the count equals ``vst``'s -- and the pooled tokens' K/V kept
  uncompressed (ratio None). When r divides the tokens per frame T and T divides the window
  (Video-XL: 144 and 1440 with r = 2..16), each group lies inside one frame: per-frame pooling.
  Otherwise a group may straddle two adjacent frames; pooling strictly per frame would then keep
  ``ceil(T / r)`` tokens per frame, more than the VSTs get (r = 32 with T = 144: 5 vs 4.5).
- ``last_n``: the raw K/V of the last n frames, n the most whose ``n * T`` tokens fit ``vst``'s
  token count at r (possibly 0 frames: then the memory is the sink alone).
- ``full``: every raw token's K/V (ratio None): the uncompressed upper bound, independent of r.

With ratio None the runtime keeps every token of each window, and each window attends causally
to all the memory before it, so ``full`` equals one causal forward over the whole token sequence.

``open_tail``: a live stream asked a question has an interval still open, its frames not yet
compressed; `Runtime.answer` reads them raw after the stored intervals. With ``open_tail`` the
video's last interval is left out of the store and kept as `Memory.raw`, the memory a question
at the clip's last frame gets from a live stream (``last_n`` has no such layout: its budget
already keeps the last frames raw).

Letters: N frames, T visual tokens per frame, C hidden, Cv vision width, n raw tokens of a span.

Example:
    >>> import numpy as np
    >>> from streamvxl import MemoryConfig
    >>> from streamvxl.intervals import BoundaryConfig
    >>> from streamvxl.runtime import Runtime, StreamSettings
    >>> from streamvxl.testing import make_tokenizer, random_videoxl
    >>> runtime = Runtime(random_videoxl(0), make_tokenizer())
    >>> frames = np.zeros((12, 56, 56, 3), np.uint8)
    >>> video = encode_video(runtime, [frames], BoundaryConfig(window=1, min_frames=2,
    ...                                                        max_frames=6))
    >>> settings = runtime.settings(MemoryConfig(window=16))
    >>> [build_memory(runtime, settings, video, m, 4).memory_tokens for m in METHODS]
    [12, 12, 12, 48]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from streamvxl.intervals import BoundaryConfig, ClosedInterval, segment
from streamvxl.memory.store import MemoryStore
from streamvxl.model.encoder import retained, window_plan
from streamvxl.model.layout import RemainderRule, split_windows, window_layout
from streamvxl.runtime import Runtime, StreamSettings

log = logging.getLogger(__name__)

Method = Literal["vst", "avg_pool", "last_n", "full"]
METHODS: tuple[Method, ...] = ("vst", "avg_pool", "last_n", "full")
"""The method first, then the baselines, then the upper bound."""


@dataclass
class EncodedVideo:
    """A video through the vision side, once: what every memory of it is built from."""

    name: str
    """An identifier (for logs and predictions), e.g. ``"eval-3"``."""
    tokens: torch.Tensor
    """(N, T, C) each frame's raw tokens (its visual tokens, after its time stamp when the
    model stamps frames), on the model's device."""
    embeddings: torch.Tensor
    """(N, Cv) float32 CLS embeddings on the CPU (the boundary detector's input)."""
    timestamps: np.ndarray
    """(N,) seconds of each frame."""
    intervals: tuple[ClosedInterval, ...]
    """The boundary detector's intervals; they tile frames 0..N-1."""

    @property
    def num_frames(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def tokens_per_frame(self) -> int:
        return int(self.tokens.shape[1])


STILLS_FPS = 2.0
"""The rate frames given no timestamps are timed at (1 / this seconds apart): the probes'
stills, and the images of a training example (`training.batch.make_example`)."""


@torch.no_grad()
def encode_video(runtime: Runtime, chunks: Iterable[np.ndarray], boundary: BoundaryConfig,
                 fps: float = STILLS_FPS, name: str = "video",
                 timestamps: np.ndarray | None = None) -> EncodedVideo:
    """Encode frames arriving in chunks of (f, H, W, 3) uint8 (any sizes: a renderer can
    stream them) through the runtime's vision path, then cut the whole video into intervals
    with the product's segmenter. Only the tokens are kept, never the pixels: each frame's
    visual tokens, after its time stamp when the model stamps frames (`Runtime.stamp`).
    ``timestamps``: (N,) seconds of the frames (a camera's outage skips some); None: frame i
    at i / ``fps``."""
    tokens: list[torch.Tensor] = []
    embeds: list[torch.Tensor] = []
    for chunk in chunks:
        if len(chunk):
            out = runtime.encode_images(list(chunk))  # tokens (f, T, C), embeddings (f, Cv)
            tokens.append(out.tokens)
            embeds.append(out.embeddings)
    if not tokens:
        raise ValueError("encode_video got no frames")
    all_embeds = torch.cat(embeds)  # (N, Cv)
    n = all_embeds.shape[0]
    times = np.arange(n, dtype=np.float64) / fps if timestamps is None else \
        np.asarray(timestamps, dtype=np.float64)
    if times.shape != (n,):
        raise ValueError(f"{n} frames but {times.shape} timestamps")
    all_tokens = runtime.stamp(torch.cat(tokens), list(times - times[0]))  # (N, T, C)
    intervals = tuple(segment(list(all_embeds.double().numpy()), boundary))
    return EncodedVideo(name, all_tokens, all_embeds, times, intervals)


@dataclass
class Memory:
    """A built memory: its store (ready for `Runtime.decode`), and its size."""

    store: MemoryStore
    video: EncodedVideo
    method: Method
    ratio: int | None
    """The ratio the budget was set by (None for ``full``)."""
    memory_tokens: int
    """Retained video tokens (the sink not counted)."""
    sink_tokens: int
    frames_kept: int
    """Frames the memory draws on (``last_n`` keeps fewer than all)."""
    raw: torch.Tensor | None = None
    """(n, C) the open interval's raw tokens, read uncompressed after the store (``open_tail``);
    None when every interval is stored."""

    @property
    def raw_tokens(self) -> int:
        """Raw tokens read after the store (0 when every interval is stored)."""
        return 0 if self.raw is None else int(self.raw.shape[0])


def vst_token_count(video: EncodedVideo, ratio: int, window: int,
                    remainder: RemainderRule = "summarize") -> int:
    """Tokens ``vst`` keeps at ``ratio``: the VSTs of every window of every interval."""
    t = video.tokens_per_frame
    return sum(retained(window_plan(c.num_frames * t, ratio, window, remainder))
               for c in video.intervals)


def pool_like_vsts(tokens: torch.Tensor, ratio: int, window: int,
                   remainder: RemainderRule = "summarize") -> torch.Tensor:
    """Average raw tokens (n, C) in the groups the VSTs summarise: per window of at most
    ``window`` tokens, groups of ``ratio`` consecutive tokens, a shorter last group under
    "summarize" (dropped under "drop"). Returns (m, C), m = the VST count of the same span.

    Example:
        >>> x = torch.arange(10.0)[:, None]
        >>> pool_like_vsts(x, 4, window=8)[:, 0].tolist()     # windows [0, 8) and [8, 10)
        [1.5, 5.5, 8.5]
    """
    out = []
    for s, e in split_windows(tokens.shape[0], window):
        n_groups = window_layout(e - s, ratio, remainder).num_vst
        if n_groups == 0:
            continue
        w = tokens[s:e].float()  # (L, C)
        group = torch.arange(e - s, device=w.device) // ratio  # (L,)
        keep = group < n_groups  # "drop" loses the tail, as the VSTs do
        sums = torch.zeros(n_groups, w.shape[1], device=w.device).index_add_(
            0, group[keep], w[keep])  # (G, C)
        counts = torch.bincount(group[keep], minlength=n_groups)  # (G,)
        out.append(sums / counts[:, None])
    if not out:
        return tokens[:0]
    return torch.cat(out).to(tokens.dtype)  # (m, C)


def last_n_frames(budget: int, video: EncodedVideo) -> int:
    """The most frames whose raw tokens fit ``budget``."""
    return min(video.num_frames, budget // video.tokens_per_frame)


def build_memory(runtime: Runtime, settings: StreamSettings, video: EncodedVideo,
                 method: Method, ratio: int | None, open_tail: bool = False) -> Memory:
    """A new memory of ``video``, laid out as a stream with ``settings`` lays it out (its sink,
    window and remainder rule): the sink and ``method``'s memory at ``ratio`` (see the module
    docstring). ``ratio`` may be None only for ``full``. ``open_tail``: the last interval stays
    raw (`Memory.raw`), as a live stream's open interval does."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    if open_tail and method == "last_n":
        raise ValueError("open_tail has no last_n layout: last_n keeps its last frames raw "
                         "already; use it with vst, avg_pool or full")
    if ratio is None and method != "full":
        raise ValueError(f"method {method!r} needs a ratio (its budget is vst's at that ratio)")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, int)
                              or ratio < 1):
        raise ValueError(f"ratio must be an int >= 1 or None, got {ratio!r}")
    store = runtime.new_store()  # no budget: evicting would change the sizes being compared
    runtime.set_sink(store, torch.tensor(settings.prefix_ids, dtype=torch.long))
    window, remainder = settings.window, settings.config.remainder

    def add(tokens: torch.Tensor, r: int | None, first: int, last: int) -> None:
        runtime.compress(store, tokens, r, window, remainder,
                         t_start=float(video.timestamps[first]),
                         t_end=float(video.timestamps[last]), frame_start=first, frame_end=last,
                         embedding=video.embeddings[first:last + 1].mean(0))

    n, t, c = video.tokens.shape
    kept = n
    stored, raw = video.intervals, None
    if open_tail and video.intervals:
        *stored, tail = video.intervals
        raw = video.tokens[tail.start:tail.end + 1].reshape(-1, c)  # (f*T, C)
    for iv in stored:
        span = video.tokens[iv.start:iv.end + 1]  # (f, T, C)
        if method == "vst":
            add(span, ratio, iv.start, iv.end)
        elif method == "avg_pool":
            pooled = pool_like_vsts(span.reshape(-1, c), ratio, window, remainder)  # (m, C)
            add(pooled, None, iv.start, iv.end)
        elif method == "full":
            add(span, None, iv.start, iv.end)
    if method == "last_n":
        budget = vst_token_count(video, ratio, window, remainder)
        kept = last_n_frames(budget, video)
        if kept:
            add(video.tokens[n - kept:], None, n - kept, n - 1)
    memory = Memory(store, video, method, None if method == "full" else ratio,
                    store.interval_tokens(), store.sink_tokens, kept, raw)
    log.debug("%s %s r=%s: %d tokens (+%d raw) from %d frames", video.name, method, ratio,
              memory.memory_tokens, memory.raw_tokens, kept)
    return memory


__all__ = ["METHODS", "EncodedVideo", "Memory", "Method", "build_memory", "encode_video",
           "last_n_frames", "pool_like_vsts", "vst_token_count"]
