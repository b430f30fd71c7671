"""Shared episodes for the world tests: a fixed set of seeds over a few configurations."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from streamvxl.world.scene import Episode, Split, WorldConfig, sample_episode

CONFIGS = {
    "default": WorldConfig(num_frames=48),
    "busy": WorldConfig(num_frames=64, max_objects=6, edge_prob=0.8, cut_prob=0.8,
                        sign_prob=1.0, max_signs=3, fps=1.0),
    "wide": WorldConfig(num_frames=24, height=48, width=96, fps=4.0, max_objects=3,
                        sign_prob=0.7, max_signs=2),
    "offline": WorldConfig(num_frames=32, max_objects=3, sign_prob=0.5, offline_prob=0.9),
    "sizes": WorldConfig(num_frames=24, max_objects=3, sign_prob=0.5,
                         sizes=((48, 48), (64, 112), (96, 72), (80, 80))),
    "unnamed": WorldConfig(num_frames=32, max_objects=4, sign_prob=0.3, stay_prob=0.3,
                           unnamed_prob=0.3),
}


@lru_cache(maxsize=8)
def episodes(split: Split = "train", count: int = 60) -> tuple[Episode, ...]:
    """``count`` episodes per configuration, seeds 0 .. count - 1."""
    out = []
    for i, cfg in enumerate(CONFIGS.values()):
        for seed in range(count):
            out.append(sample_episode(np.random.default_rng([i, seed]), cfg, split))
    return tuple(out)
