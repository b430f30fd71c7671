"""Online scene boundaries from per-frame embeddings: the sliding depth score.

Letters: D = embedding size, w = half-window (``BoundaryConfig.window``).

Frame t has an embedding e_t (D,), e.g. the CLIP CLS of the frame. The similarity across the
*gap* after frame t is ``s_t = cos(e_t, e_{t+1})``; a scene cut makes s dip. The depth score says
how deep the dip is against the highest similarity within w gaps on each side::

    d_t = max(s_{t-w..t-1}) + max(s_{t+1..t+w}) - 2 * s_t

A boundary "after frame t" (the next interval starts at frame t + 1) is declared when s_t is a
local minimum of s over [t - w, t + w] -- strictly smaller than its earlier neighbours and no
larger than its later ones, so a plateau of equal minima cuts once, at its first gap -- and
``d_t > delta``. Near the stream's start or end only the neighbours that exist count; with none on
one side, the other side's max stands in for both terms.

Timing: deciding gap t needs s_{t+w} = cos(e_{t+w}, e_{t+w+1}), so the decision is returned by the
``update`` call that receives frame t + w + 1, i.e. ``delay_frames`` = w frames after the first
frame of the new interval (frame t + 1). ``flush`` decides the last w gaps at the end of a stream.

Everything is computed in float64 on the CPU, so float32 and float64 inputs of the same values (and
any device) give the same decisions. Memory is O(w): the newest unit embedding, the last 2w + 1
similarities and, in adaptive mode, ``adaptive_history`` depth scores.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from streamvxl.errors import ConfigError, FrameError

logger = logging.getLogger(__name__)

Embedding = torch.Tensor | np.ndarray
"""A frame embedding: a 1-D tensor or array of shape (D,), any float dtype or device."""


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(
            f"{name} must be >= {minimum}, got {value}; raise it to at least {minimum}"
        )


def _check_nonneg_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConfigError(f"{name} must be a finite float >= 0, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ConfigError(f"{name} must be a finite float >= 0, got {value}")
    return value


@dataclass(frozen=True)
class BoundaryConfig:
    """How the stream is cut into intervals (see the module docstring for the exact rule)."""

    window: int = 3
    """Half-window w: gaps compared on each side of a candidate; decisions lag by w frames."""
    threshold: float | Literal["adaptive"] = 0.15
    """delta: a cut needs depth > delta; a float is fixed, "adaptive" follows recent depth scores."""
    adaptive_k: float = 2.0
    """Adaptive mode: delta = mean + adaptive_k * std of the recent depth scores."""
    adaptive_history: int = 64
    """Adaptive mode: how many recent non-boundary depth scores the mean and std cover."""
    min_threshold: float = 0.05
    """Adaptive mode: floor on delta, so a perfectly static scene never cuts."""
    min_frames: int = 4
    """Segmenter: a detected boundary closes an interval only if it holds at least this many frames."""
    max_frames: int = 64
    """Segmenter: the open interval is closed as soon as it holds this many frames."""

    def __post_init__(self) -> None:
        _check_int("window", self.window, 1)
        if isinstance(self.threshold, str):
            if self.threshold != "adaptive":
                raise ConfigError(
                    f'threshold must be a float >= 0 or "adaptive", got {self.threshold!r}'
                )
        else:
            object.__setattr__(self, "threshold", _check_nonneg_float("threshold", self.threshold))
        object.__setattr__(self, "adaptive_k", _check_nonneg_float("adaptive_k", self.adaptive_k))
        _check_int("adaptive_history", self.adaptive_history, 2)
        object.__setattr__(
            self, "min_threshold", _check_nonneg_float("min_threshold", self.min_threshold)
        )
        _check_int("min_frames", self.min_frames, 1)
        _check_int("max_frames", self.max_frames, 1)
        if self.max_frames < self.min_frames:
            raise ConfigError(
                f"max_frames ({self.max_frames}) must be >= min_frames ({self.min_frames}); "
                "raise max_frames or lower min_frames"
            )

    @property
    def adaptive(self) -> bool:
        """Whether delta follows the recent depth scores instead of a fixed value."""
        return self.threshold == "adaptive"


def _to_unit(embedding: object, dim: int | None) -> np.ndarray:
    """Validates one embedding and returns it as a float64 unit vector (D,)."""
    if isinstance(embedding, torch.Tensor):
        if embedding.is_complex():
            raise FrameError(f"embedding must be real, got dtype {embedding.dtype}")
        x = embedding.detach().to(device="cpu", dtype=torch.float64).numpy()
    else:
        if np.iscomplexobj(embedding):
            raise FrameError("embedding must be real, got a complex array")
        try:
            x = np.asarray(embedding, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise FrameError(
                f"embedding must be a 1-D torch.Tensor or numpy array of floats, got "
                f"{type(embedding).__name__}"
            ) from e
    if x.ndim != 1 or x.shape[0] == 0:
        raise FrameError(
            f"embedding must be 1-D with shape (D,), got shape {tuple(x.shape)}; "
            "pass one vector per frame, e.g. cls.reshape(-1)"
        )
    if dim is not None and x.shape[0] != dim:
        raise FrameError(
            f"embedding has size {x.shape[0]} but this stream's embeddings have size {dim}; "
            "use one embedding model per stream, or reset() to start a new stream"
        )
    if not np.isfinite(x).all():
        raise FrameError("embedding contains NaN or inf; check the frame and the vision tower")
    norm = float(np.linalg.norm(x))
    if norm == 0.0:
        raise FrameError("embedding is all zeros, so its cosine similarity is undefined")
    return x / norm


class BoundaryDetector:
    """Online boundary detector on adjacent-frame cosine similarities (sliding depth score).

    Gaps are numbered by the frame before them: gap t lies between frames t and t + 1, counting
    frames from 0 at the first ``update`` after construction, ``reset`` or ``flush``.

    Example:
        >>> import numpy as np
        >>> det = BoundaryDetector(BoundaryConfig(window=2, threshold=0.15))
        >>> a, b = np.eye(4)[0], np.eye(4)[1]
        >>> frames = [a] * 5 + [b] * 5              # a cut after frame 4
        >>> decided = [det.update(e) for e in frames]
        >>> [(i, gaps) for i, gaps in enumerate(decided) if gaps]
        [(7, [4])]
        >>> det.delay_frames                       # reported with frame 4 + 1 + 2
        2
        >>> det.flush()
        []
    """

    def __init__(self, config: BoundaryConfig | None = None) -> None:
        if config is None:
            config = BoundaryConfig()
        if not isinstance(config, BoundaryConfig):
            raise ConfigError(f"config must be a BoundaryConfig, got {type(config).__name__}")
        self._config = config
        w = config.window
        self._sims: deque[float] = deque(maxlen=2 * w + 1)  # s of the last 2w+1 gaps
        self._history: deque[float] = deque(maxlen=config.adaptive_history)
        self._prev: np.ndarray | None = None  # unit embedding of the newest frame, (D,)
        self._num_frames = 0
        self._num_decided = 0  # gaps 0 .. _num_decided-1 are decided

    @property
    def config(self) -> BoundaryConfig:
        """The configuration this detector was built with."""
        return self._config

    @property
    def delay_frames(self) -> int:
        """w: the boundary after frame t is returned by the update for frame t + 1 + w."""
        return self._config.window

    @property
    def num_frames(self) -> int:
        """Frames seen since the stream started (the next frame gets this index)."""
        return self._num_frames

    @property
    def num_decided(self) -> int:
        """Gaps decided so far: gaps 0 .. num_decided - 1 (boundary or not)."""
        return self._num_decided

    @property
    def similarities(self) -> tuple[float, ...]:
        """The most recent similarities (at most 2w + 1), oldest first.

        The last entry is s of gap ``num_frames - 2``; entry i is s of gap
        ``num_frames - 1 - len(similarities) + i``.
        """
        return tuple(self._sims)

    @property
    def last_similarity(self) -> float | None:
        """s of the newest gap, cos(e of the previous frame, e of the newest), or None."""
        return self._sims[-1] if self._num_frames >= 2 else None

    @property
    def threshold(self) -> float:
        """delta as it stands now: the fixed value, or the adaptive one from the history."""
        cfg = self._config
        if not cfg.adaptive:
            return float(cfg.threshold)
        if not self._history:
            return cfg.min_threshold
        h = np.fromiter(self._history, dtype=np.float64)
        return max(cfg.min_threshold, float(h.mean() + cfg.adaptive_k * h.std()))

    def reset(self) -> None:
        """Forgets the stream; the next frame is frame 0 and may have any embedding size."""
        self._sims.clear()
        self._history.clear()
        self._prev = None
        self._num_frames = 0
        self._num_decided = 0

    def update(self, embedding: Embedding) -> list[int]:
        """Adds the next frame's embedding (D,) and returns the gaps decided as boundaries now.

        A returned gap t means a boundary between frames t and t + 1. One gap is decided per
        call once w + 1 gaps exist, so the list holds at most one index.

        Raises:
            FrameError: the embedding is not 1-D, is empty, holds NaN/inf, is all zeros, or has
                a different size than this stream's earlier embeddings. The state is unchanged.
        """
        u = _to_unit(embedding, None if self._prev is None else self._prev.shape[0])
        if self._prev is not None:
            self._sims.append(float(np.clip(np.dot(self._prev, u), -1.0, 1.0)))
        self._prev = u
        self._num_frames += 1
        num_gaps = self._num_frames - 1
        out = []
        # gap t needs s_{t+w}, the newest gap is num_gaps - 1
        while self._num_decided + self._config.window < num_gaps:
            if self._decide(self._num_decided, num_gaps):
                out.append(self._num_decided)
            self._num_decided += 1
        return out

    def flush(self) -> list[int]:
        """Decides the undecided gaps (the last w) with the neighbours that exist, then resets.

        Returns the gaps among them that are boundaries, in order.
        """
        num_gaps = max(self._num_frames - 1, 0)
        out = [t for t in range(self._num_decided, num_gaps) if self._decide(t, num_gaps)]
        self.reset()
        return out

    def _decide(self, t: int, num_gaps: int) -> bool:
        """Whether gap t is a boundary, given the gaps 0 .. num_gaps - 1 seen so far."""
        w = self._config.window
        first = num_gaps - len(self._sims)  # gap index of self._sims[0]
        lo, hi = max(0, t - w), min(num_gaps, t + w + 1)
        assert lo >= first, "similarity buffer too short"
        s_t = self._sims[t - first]
        left = [self._sims[i - first] for i in range(lo, t)]
        right = [self._sims[i - first] for i in range(t + 1, hi)]
        if not left and not right:  # a single gap in the whole stream: no context, no cut
            return False
        is_min = all(s_t < x for x in left) and all(s_t <= x for x in right)
        max_left = max(left) if left else max(right)
        max_right = max(right) if right else max_left
        depth = max_left + max_right - 2.0 * s_t
        delta = self.threshold
        cut = is_min and depth > delta
        if cut:
            logger.debug("boundary after frame %d: depth %.4f > delta %.4f", t, depth, delta)
        elif self._config.adaptive:
            # Boundaries stay out of the history, so one hard cut does not lift delta for the next
            # adaptive_history gaps; a negative depth is a peak, not a valley, and counts as 0.
            self._history.append(max(depth, 0.0))
        return cut


__all__ = ["BoundaryConfig", "BoundaryDetector", "Embedding"]
