"""`RuntimeConfig`: how one runtime uses its device and its host, whatever the streams."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..errors import ConfigError

log = logging.getLogger(__name__)

MAX_AUTO_THREADS = 8
"""``cpu_threads=None`` never picks more than this (the small default model stops scaling)."""


@dataclass(frozen=True)
class RuntimeConfig:
    """Settings of a runtime (one model shared by every stream of a hub).

    Example:
        >>> RuntimeConfig(vision_batch=32, cpu_threads=1).vision_batch
        32
    """

    vision_batch: int = 16
    """Most frames per vision-tower forward; queued frames of all streams are batched."""
    cpu_threads: int | None = None
    """Threads torch uses on the CPU (a process-wide setting, applied when a runtime over a CPU
    model starts). None picks half the usable cores, at least 1 and at most 8: torch's default,
    one per core, spins every core at each parallel step, and beside one other busy process on a
    2-core machine that made ingest 15x slower. 0 leaves torch's setting as it is (e.g. set by
    ``torch.set_num_threads`` or ``OMP_NUM_THREADS``)."""
    cuda_graphs: bool = True
    """Decode answers, and run a question's retrieval pass, from captured CUDA graphs (CUDA
    models only; False runs both eagerly, with the same results)."""

    def __post_init__(self) -> None:
        for name, low in (("vision_batch", 1), ("cpu_threads", 0)):
            value = getattr(self, name)
            if value is None and name == "cpu_threads":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"RuntimeConfig.{name} must be an int >= {low}"
                                  f"{' or None' if name == 'cpu_threads' else ''}, got {value!r}")
        if not isinstance(self.cuda_graphs, bool):
            raise ConfigError(f"RuntimeConfig.cuda_graphs must be a bool, got {self.cuda_graphs!r}")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose_cpu_threads(setting: int | None) -> int | None:
    """The torch thread count for ``RuntimeConfig.cpu_threads`` (None: leave torch alone)."""
    if setting == 0:
        return None
    if setting is not None:
        return setting
    return max(1, min(MAX_AUTO_THREADS, usable_cores() // 2))


def apply_cpu_threads(setting: int | None) -> None:
    """Set torch's intra-op threads as ``RuntimeConfig.cpu_threads`` says, and log it."""
    import torch

    n = choose_cpu_threads(setting)
    if n is None or n == torch.get_num_threads():
        return
    log.info("torch CPU threads: %d -> %d (RuntimeConfig.cpu_threads=%s; 0 leaves it alone)",
             torch.get_num_threads(), n, setting)
    torch.set_num_threads(n)
