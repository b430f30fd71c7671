"""The crash test's victim (`test_crash.py`): a process that streams frames into a logged
memory until it is killed.

The test starts it from a fork server that has imported torch and streamvxl already (only the
model is loaded in the child), so twenty-odd victims cost seconds, not minutes; each is still a
process of its own, killed with SIGKILL. Frames come from `tests.runtime.helpers.scenes` (the
same for every run), one at a time, in synchronous mode (deterministic). It tells the test
``stored L C`` when L intervals have their records in the log and C are closed (in memory: at
most one more), and ``writing`` in the middle of each record's large parts: the log's file
writes them in two halves with a pause between, so a kill there tears the record.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from streamvxl import VideoMemory
from tests.runtime.helpers import config, scenes

PAUSE = 0.02
"""Seconds between the two halves of a record's large parts."""


class TearableFile:
    """A file whose records land in steps: each large part is written half, then ``writing``
    is said and the writer pauses, then the rest follows."""

    def __init__(self, fh, say: Callable[[str], None]) -> None:
        self._fh, self._say = fh, say

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        if data.nbytes < 1024:  # the record's head, its meta: written at once
            return self._fh.write(data)
        half = data.nbytes // 2
        self._fh.write(data[:half])
        self._fh.flush()
        self._say("writing")
        time.sleep(PAUSE)
        self._fh.write(data[half:])
        return data.nbytes

    def __getattr__(self, name: str):
        return getattr(self._fh, name)


def run(checkpoint: str, log_dir: str, frames: int, say: Callable[[str], None]) -> None:
    torch.set_num_threads(1)
    mem = VideoMemory.from_pretrained(checkpoint, config=config(log_dir=log_dir, token_budget=60),
                                      device="cpu", background=False)
    writer = mem.state.log.writer
    writer._fh = TearableFile(writer._fh, say)
    images = scenes(frames // 9 + 1, 9)[:frames]
    say("ready")
    logged = closed = 0
    for i, image in enumerate(images):
        mem.push(image, timestamp=float(i))
        stats = mem.stats()
        if (stats.intervals_logged, stats.intervals_closed) != (logged, closed):
            logged, closed = stats.intervals_logged, stats.intervals_closed
            say(f"stored {logged} {closed}")
    mem.flush()
    stats = mem.stats()
    say(f"stored {stats.intervals_logged} {stats.intervals_closed}")
    mem.close()
    say("done")


def run_in_child(checkpoint: str, log_dir: str, frames: int, conn) -> None:
    """`run`, telling the test through a pipe."""
    run(checkpoint, log_dir, frames, conn.send)


__all__ = ["TearableFile", "run", "run_in_child"]
