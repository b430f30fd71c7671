"""Helpers for the runtime's tests: frames in scenes, memories, a worker held still."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from streamvxl import BoundaryConfig, MemoryConfig, VideoMemory
from streamvxl.runtime.hub import StreamHandle

BOUNDARY = BoundaryConfig(window=2, threshold=0.02, min_frames=3, max_frames=10)
QUESTION = "What colour is the car?"


def scenes(n_scenes: int = 4, per_scene: int = 9, seed: int = 0) -> list[np.ndarray]:
    """Frames in scenes: a random base picture per scene plus small per-frame noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_scenes):
        base = rng.integers(0, 256, (48, 64, 3))
        for _ in range(per_scene):
            noisy = base + rng.integers(-6, 7, base.shape)
            frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return frames


def config(**kw) -> MemoryConfig:
    kw.setdefault("boundary", BOUNDARY)
    kw.setdefault("ratio", 2)
    return MemoryConfig(**kw)


def tiered(runtime, background: bool = False, **kw) -> VideoMemory:
    """A memory on ``runtime`` past its budget of 40 tokens (offloaded by default), fed six
    scenes of nine frames (at 0..53 s) and flushed: intervals on the GPU and on the host."""
    kw.setdefault("token_budget", 40)
    kw.setdefault("eviction", "offload")
    mem = VideoMemory.on(runtime, config(**kw), background=background)
    mem.extend(scenes(6, 9), timestamps=[float(i) for i in range(54)])
    mem.flush()
    mem.wait()
    return mem


def memory(ckpt, background: bool = True, **kw) -> VideoMemory:
    return VideoMemory.from_pretrained(ckpt, config=config(**kw), device="cpu",
                                       background=background)


def kv(stream: StreamHandle) -> tuple[torch.Tensor, torch.Tensor]:
    """The stream's retained K/V, after everything pushed is in memory."""
    stream.wait()
    return stream.state.store.keys().clone(), stream.state.store.values().clone()


@contextmanager
def worker_held(stream: StreamHandle) -> Iterator[None]:
    """Keep the stream's worker busy in a control step until the block ends: frames and
    questions queue up meanwhile, exactly as behind a slow step."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(30)

    future = stream._hub._scheduler.control(hold)
    assert started.wait(30), "the worker never took the holding step"
    try:
        yield
    finally:
        release.set()
        future.result(30)
