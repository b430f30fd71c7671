"""Synthetic embedding streams with known cuts, and a slow offline reference of the detector.

Letters: N = frames, D = embedding size.
"""

from __future__ import annotations

import numpy as np

from streamvxl.intervals import BoundaryConfig


def scene_sequence(
    rng: np.random.Generator,
    lengths: list[int],
    dim: int = 32,
    num_clusters: int = 6,
    noise: float = 0.02,
) -> tuple[np.ndarray, list[int]]:
    """Scenes of the given lengths, each = one cluster centre + small noise.

    Centres are orthonormal (well separated); consecutive scenes use different clusters.
    Returns the embeddings (N, D) float64 and the cut gaps (the last frame of every scene but
    the last).
    """
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    centres = q[:num_clusters]  # (K, D), orthonormal rows
    frames, cuts, cluster = [], [], -1
    for i, n in enumerate(lengths):
        cluster = (cluster + 1 + int(rng.integers(num_clusters - 1))) % num_clusters
        frames.append(centres[cluster] + noise * rng.normal(size=(n, dim)))
        if i < len(lengths) - 1:
            cuts.append(sum(lengths[: i + 1]) - 1)
    return np.concatenate(frames), cuts


def drift_sequence(
    rng: np.random.Generator, n: int, dim: int = 32, step: float = 0.02, noise: float = 0.002
) -> np.ndarray:
    """An embedding rotating slowly (``step`` radians per frame) in a random plane: (N, D)."""
    q, _ = np.linalg.qr(rng.normal(size=(dim, 2)))
    a, b = q[:, 0], q[:, 1]
    angles = step * np.arange(n)[:, None]  # (N, 1)
    return np.cos(angles) * a + np.sin(angles) * b + noise * rng.normal(size=(n, dim))


def similarities(emb: np.ndarray) -> np.ndarray:
    """s_t = cos(e_t, e_{t+1}) for t = 0 .. N-2, float64."""
    u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return np.clip(np.sum(u[:-1] * u[1:], axis=1), -1.0, 1.0)


def reference_boundaries(emb: np.ndarray, cfg: BoundaryConfig) -> list[tuple[int, int | None]]:
    """Offline brute force with the whole stream in view: (gap, frame whose update reports it).

    The reporting frame is t + 1 + w when s_{t+w} exists, else None (decided by flush).
    """
    s = similarities(np.asarray(emb, dtype=np.float64))
    w, out, history = cfg.window, [], []
    for t in range(len(s)):
        left, right = s[max(0, t - w) : t], s[t + 1 : t + w + 1]
        if len(left) == 0 and len(right) == 0:
            continue
        is_min = bool(np.all(s[t] < left) and np.all(s[t] <= right))
        max_left = left.max() if len(left) else right.max()
        max_right = right.max() if len(right) else max_left
        depth = max_left + max_right - 2 * s[t]
        if cfg.adaptive:
            recent = np.array(history[-cfg.adaptive_history :])
            delta = cfg.min_threshold
            if len(recent):
                delta = max(delta, recent.mean() + cfg.adaptive_k * recent.std())
        else:
            delta = cfg.threshold
        if is_min and depth > delta:
            out.append((t, t + 1 + w if t + w < len(s) else None))
        elif cfg.adaptive:
            history.append(max(depth, 0.0))
    return out
