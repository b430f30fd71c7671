"""Render speed on one CPU core: frames per second, printed as a table.

Run: ``python -m benchmarks.render_bench [--episodes 200] [--frames 64]``.
Times `render` (whole episodes), `render_frame` (one frame per call), `sample_episode` and
`video_sample` (sampling + rendering + questions), at several frame sizes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from streamvxl.world.render import render, render_frame
from streamvxl.world.scene import Episode, WorldConfig, sample_episode
from training.samples import video_sample


def _rate(fn: Callable[[], int], min_seconds: float = 0.5) -> float:
    """Units per second of ``fn`` (which returns how many units it did), repeated to run for at
    least ``min_seconds``."""
    fn()  # warm caches
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or done == 0:
        done += fn()
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    args = parser.parse_args()
    print(f"{'size':>6} {'render f/s':>12} {'render_frame f/s':>17} {'sample ep/s':>12} "
          f"{'video_sample f/s':>17}")
    for size in args.sizes:
        cfg = WorldConfig(num_frames=args.frames, height=size, width=size, max_objects=5,
                          sign_prob=0.5)
        rng = np.random.default_rng(0)
        eps: list[Episode] = [sample_episode(rng, cfg) for _ in range(args.episodes)]
        full = _rate(lambda eps=eps: sum(len(render(e)) for e in eps))
        one = _rate(lambda eps=eps: sum(
            render_frame(e, t).shape[0] > 0 for e in eps[:20] for t in range(e.num_frames)))
        sample = _rate(lambda cfg=cfg, rng=rng: sum(
            sample_episode(rng, cfg) is not None for _ in range(50)))
        vids = _rate(lambda cfg=cfg, rng=rng: sum(
            len(video_sample(rng, cfg).frames) for _ in range(20)))
        print(f"{size:>6} {full:>12,.0f} {one:>17,.0f} {sample:>12,.0f} {vids:>17,.0f}")


if __name__ == "__main__":
    main()
