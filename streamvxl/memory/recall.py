"""Retrieval at ask time: which stored intervals a question reads when not all of them fit.

Every interval leaves a *key digest* when it is stored: its VSTs' pre-RoPE keys in the upper
half of the layers, pooled to at most ``digest_tokens`` rows (consecutive VSTs averaged;
shorter intervals repeat their rows, which leaves a maximum unchanged). Digests are small
(streamvxl-tiny: 90 KiB per interval at the default 8 rows in float32 on a CPU, 45 KiB in
float16 beside a GPU; Video-XL-7B: 112 KiB in float16) and stay in host memory for every
interval on every tier, so scoring never touches the tiers themselves.

A question is scored against them with its own queries (`question_queries`, from one short
pass over [sink | question]: its last token's, which produce the answer's first token): per
layer and query head, the best dot product between that query and the interval's digest rows;
each (layer, head) score is standardised over the intervals (so no head's scale dominates) and
the standardised scores are averaged. This is
ReKV's idea (the question's queries against cached keys), applied to the compressed intervals
instead of raw frame blocks, with one selection for all layers so the chosen K/V re-pack into
one position range.

Or by what the question *names* (``scorer="frames"``): each interval keeps the text-to-frame
embeddings of a few of its frames (`IntervalRecord.looks`, `streamvxl.memory.clip_scorer`),
and scores the best cosine between them and the question's text embedding (`look_scores`);
``"both"`` averages the two, each standardised over the intervals.

`select` then fills the retrieval budget: the most recent intervals first (``recent`` of it:
what happened just now is always in view), then the best-scoring ones, and returns them in time
order. Keys are stored before RoPE, so any subset re-packs exactly.

Shapes: N intervals, L' digest layers, G kv heads, H query heads, k digest rows, D head_dim,
E' text-to-frame embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, get_args

import numpy as np
import torch

from ..errors import ConfigError

Scorer = Literal["keys", "frames", "both"]
"""How intervals are scored against a question (`Retrieval.scorer`)."""


@dataclass(frozen=True)
class Retrieval:
    """How a question chooses the intervals it reads (`MemoryConfig.retrieval`).

    Example:
        >>> Retrieval(budget=512, recent=0.25).budget
        512
    """

    budget: int | None = None
    """Most interval tokens (VSTs) one question reads; None: what the GPU budget holds
    (``token_budget`` less the sink), so an answer costs what an in-budget answer costs."""
    recent: float = 0.25
    """Share of ``budget`` given to the newest intervals, whatever their score."""
    digest_tokens: int = 8
    """Rows of an interval's key digest (more: finer scores, more host memory)."""
    scorer: Scorer | None = None
    """What ranks the intervals: "keys" (the question's own queries against each interval's
    key digest), "frames" (the question's text embedding against image embeddings of a few of
    each interval's frames, `ClipScorer`: finds what a question *names*, a shape, a colour,
    a sign), or "both" (the two standardised scores averaged). None: the model's choice
    (`Runtime.default_scorer`): "frames" for the embedded streamvxl-tiny, whose shipped scorer
    knows its world, "keys" for any other checkpoint (give "frames" with your own open_clip
    model in ``frames`` for real footage)."""
    frames: str = "world"
    """The text-to-frame scorer for "frames" / "both": "world" (the one shipped for the
    embedded model, `ClipScorer.default`) or "<open_clip architecture>@<weights.safetensors>"
    (`ClipScorer.from_open_clip`, for real footage)."""
    frame_rows: int = 8
    """Frames per interval whose image embeddings are kept for "frames" / "both" (evenly
    spaced; an interval's score is its best frame's)."""

    def __post_init__(self) -> None:
        if self.budget is not None and (isinstance(self.budget, bool)
                                        or not isinstance(self.budget, int) or self.budget < 1):
            raise ConfigError(f"Retrieval.budget must be a positive int or None, got "
                              f"{self.budget!r}")
        if isinstance(self.recent, bool) or not isinstance(self.recent, (int, float)) or \
                not 0.0 <= self.recent <= 1.0:
            raise ConfigError(f"Retrieval.recent must be a share in [0, 1], got {self.recent!r}")
        if isinstance(self.digest_tokens, bool) or not isinstance(self.digest_tokens, int) or \
                self.digest_tokens < 1:
            raise ConfigError(f"Retrieval.digest_tokens must be a positive int, got "
                              f"{self.digest_tokens!r}")
        if self.scorer is not None and self.scorer not in get_args(Scorer):
            raise ConfigError(f"Retrieval.scorer must be one of {get_args(Scorer)}, got "
                              f"{self.scorer!r}")
        if not isinstance(self.frames, str) or not (
                self.frames == "world" or ("@" in self.frames
                                           and self.frames.endswith(".safetensors"))):
            raise ConfigError(f"Retrieval.frames must be \"world\" or \"<open_clip "
                              f"architecture>@<weights.safetensors>\", got {self.frames!r}")
        if isinstance(self.frame_rows, bool) or not isinstance(self.frame_rows, int) or \
                self.frame_rows < 1:
            raise ConfigError(f"Retrieval.frame_rows must be a positive int, got "
                              f"{self.frame_rows!r}")


def digest_layers(num_layers: int) -> slice:
    """The layers digests keep: the upper half, where queries say what a question is about
    (the lower layers' keys mostly encode the surface of the tokens)."""
    return slice(num_layers // 2, num_layers)


def key_digest(keys: torch.Tensor, rows: int) -> torch.Tensor:
    """Digest (L', G, k, D) float32 on the CPU of an interval's pre-RoPE keys (L, 1, G, n, D)."""
    k = keys[digest_layers(keys.shape[0]), 0].float()  # (L', G, n, D)
    n = k.shape[2]
    if n <= rows:
        picked = k[:, :, torch.arange(rows, device=k.device) % n]  # repeats leave max as is
    else:
        bounds = torch.linspace(0, n, rows + 1).round().long().tolist()
        picked = torch.stack([k[:, :, a:b].mean(2) for a, b in pairwise(bounds)], 2)
    return picked.cpu()


class DigestIndex:
    """Key digests of every interval held on any tier, by id, in time order, and with
    ``look_rows`` the text-to-frame embeddings of its frames (`IntervalRecord.looks`).

    Rows live in host buffers grown by doubling. On a CPU they are float32 and scoring reads
    them in place; for a GPU model the key digests are float16 in pinned memory, copied to the
    GPU for each question (one DMA; scoring there takes a fraction of a millisecond) -- the
    device holds them only while scoring, so its memory stays flat however long the history.
    Looks are scored on the CPU (a few KiB per interval: one small matmul).

    Args:
        device: where key scoring runs (the model's device).
        look_rows: frames per interval whose looks are kept (`Retrieval.frame_rows`); None:
            none are.
    """

    def __init__(self, device: torch.device | str = "cpu", look_rows: int | None = None
                 ) -> None:
        self.device = torch.device(device)
        self.look_rows = look_rows
        self.ids: list[int] = []
        self._buf: torch.Tensor | None = None  # (capacity, L', G, k, D)
        self._looks: torch.Tensor | None = None  # (capacity, look_rows, E') NaN: none

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Host bytes the digests and looks hold (the buffers, grown ahead)."""
        return sum(0 if b is None else b.nbytes for b in (self._buf, self._looks))

    def add(self, interval_id: int, digest: torch.Tensor, looks: torch.Tensor | None = None
            ) -> None:
        """Note an interval's key digest (L', G, k, D) and its looks (k', E') if any."""
        n = len(self.ids)
        if self._buf is None or n == self._buf.shape[0]:
            gpu = self.device.type == "cuda"
            grown = torch.empty((max(64, 2 * n), *digest.shape),
                                dtype=torch.float16 if gpu else torch.float32, pin_memory=gpu)
            if self._buf is not None:
                grown[:n] = self._buf[:n]
            self._buf = grown
        self._buf[n] = digest
        if self.look_rows is not None and looks is not None and self._looks is None:
            self._looks = torch.empty((0, self.look_rows, looks.shape[1]))
        if self._looks is not None:
            if self._looks.shape[0] < self._buf.shape[0]:  # grown with the digests, NaN: none
                grown = torch.full((self._buf.shape[0], *self._looks.shape[1:]), float("nan"))
                grown[:self._looks.shape[0]] = self._looks
                self._looks = grown
            # fewer frames than rows: repeated, which leaves an interval's best row as it is
            self._looks[n] = float("nan") if looks is None else \
                looks[torch.arange(self._looks.shape[1]) % looks.shape[0]].float()
        self.ids.append(interval_id)

    def drop_before(self, interval_id: int) -> None:
        """Forget the digests of intervals older than ``interval_id`` (dropped for good)."""
        k = 0
        while k < len(self.ids) and self.ids[k] < interval_id:
            k += 1
        if k and self._buf is not None:
            n = len(self.ids)
            for buf in (self._buf, self._looks):
                if buf is not None:
                    buf[:n - k] = buf[k:n].clone()
            del self.ids[:k]

    def discard(self, ids: set[int]) -> None:
        """Forget the digests of exactly ``ids`` (intervals dropped for good, wherever they
        were in time)."""
        keep = [k for k, i in enumerate(self.ids) if i not in ids]
        if len(keep) == len(self.ids) or self._buf is None:
            return
        rows = torch.tensor(keep, dtype=torch.long)
        for buf in (self._buf, self._looks):
            if buf is not None:
                buf[:len(keep)] = buf[rows]
        self.ids = [self.ids[k] for k in keep]

    def clear(self) -> None:
        self.ids.clear()
        self._buf = self._looks = None

    def look_scores(self, text: torch.Tensor) -> torch.Tensor:
        """(N,) `look_scores` of every interval against a question's text embedding (E')."""
        n = len(self.ids)
        if self._looks is None:
            return torch.zeros(n)
        return _floored((self._looks[:n] @ text.float()).amax(1))

    def scores(self, queries: torch.Tensor) -> torch.Tensor:
        """(N,) relevance of each interval to a question whose pre-RoPE queries in the digest
        layers are ``queries`` (L', H, D) (see the module docstring)."""
        n = len(self.ids)
        if n <= 1 or self._buf is None:
            return torch.zeros(n)
        digests = self._buf[:n]  # (N, L', G, k, D)
        if self.device.type != "cpu":
            digests = digests.to(self.device, non_blocking=True).float()
            queries = queries.to(self.device)
        _, layers, g, rows, d = digests.shape
        h = queries.shape[1]
        q = queries.float().reshape(layers, g, h // g, d)  # heads grouped by their kv head
        # (L'G, k*N, D) @ (L'G, D, H/G): one batched matmul, then the best row per interval
        flat = digests.permute(1, 2, 0, 3, 4).reshape(layers * g, n * rows, d)
        dots = torch.bmm(flat, q.reshape(layers * g, h // g, d).transpose(1, 2))
        best = dots.reshape(layers, g, n, rows, h // g).amax(3)  # (L', G, N, H/G)
        z = (best - best.mean(2, keepdim=True)) / (best.std(2, keepdim=True) + 1e-6)
        return z.mean((0, 1, 3)).cpu()


def frame_rows(num_frames: int, rows: int) -> list[int]:
    """Which of an interval's ``num_frames`` frames keep a text-to-frame embedding: ``rows``
    evenly spaced ones, the first and last included (all of them when fewer).

    Example:
        >>> frame_rows(32, 4), frame_rows(3, 4)
        ([0, 10, 21, 31], [0, 1, 2])
    """
    if num_frames <= rows:
        return list(range(num_frames))
    return np.linspace(0, num_frames - 1, rows).round().astype(int).tolist()


def look_scores(looks: Sequence[torch.Tensor | None], text: torch.Tensor) -> torch.Tensor:
    """(N,) how well each interval's frames match a question: the best cosine between the
    question's text embedding ``text`` (E,) and the interval's looks (k, E); intervals without
    looks (stored before the stream kept them) score the lowest of the others."""
    best = torch.full((len(looks),), float("nan"))
    for i, rows in enumerate(looks):
        if rows is not None:
            best[i] = (rows.float() @ text.float()).max()
    return _floored(best)


def _floored(best: torch.Tensor) -> torch.Tensor:
    """``best`` (N,) with its NaNs (intervals without looks) set to the lowest of the others;
    zeros when none has looks."""
    known = ~best.isnan()
    if not known.any():
        return torch.zeros_like(best)
    return torch.where(known, best, best[known].min())


def standardised(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` (N,) less their mean, over their standard deviation (zeros when flat)."""
    if scores.numel() <= 1:
        return torch.zeros_like(scores)
    return (scores - scores.mean()) / (scores.std() + 1e-6)


def select(sizes: Sequence[int], scores: torch.Tensor, budget: int, recent: float) -> list[int]:
    """Positions (time order) of the intervals a question reads: the newest ones within
    ``recent * budget`` tokens, then the best-scoring ones that still fit ``budget``.

    Args:
        sizes: tokens of each interval, oldest first.
        scores: (N,) relevance of each (`DigestIndex.scores`).
        budget: most tokens in all.
        recent: share of the budget for the newest intervals.

    Example:
        >>> select([4, 4, 4, 4, 4], torch.tensor([0.0, 3.0, 1.0, 2.0, 0.0]), 12, 0.3)
        [1, 3, 4]
    """
    chosen: set[int] = set()
    used = 0
    for i in range(len(sizes) - 1, -1, -1):
        if used + sizes[i] > recent * budget:
            break
        chosen.add(i)
        used += sizes[i]
    for i in torch.argsort(scores, descending=True, stable=True).tolist():
        if i not in chosen and used + sizes[i] <= budget:
            chosen.add(i)
            used += sizes[i]
    return sorted(chosen)


__all__ = ["DigestIndex", "Retrieval", "Scorer", "digest_layers", "frame_rows", "key_digest",
           "look_scores", "select", "standardised"]
