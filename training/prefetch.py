"""Render training examples in worker processes while the model trains.

Rendering, tokenising and preprocessing an example costs a few milliseconds of CPU (~0.5 s for
a step of 160 examples), time the training process would otherwise spend not launching GPU work.
`Prefetcher` keeps the next ``depth`` steps' examples in flight on a process pool, so the
training loop only waits when the workers fall behind (on the H100 run: 0.05 s per step).
Examples stay a pure function of (seed, index): the workers call the same
`DataSource.example` the loop would, so prefetching changes no number.

Workers come from a *fork server* (not forked from the trainer, which has usually initialised
CUDA and started threads, so a forked child of it is not safe to use; and not spawned, which
re-imports torch and transformers in every worker: on a 16-core GPU host 8 spawned workers
took 130 s to make their first example). The server imports the source's module once and
forks each worker from that clean process.

A worker still re-runs the main module (multiprocessing's "prepare" step, so that objects pickled
from ``__main__`` resolve). Under ``python -m training.recipe`` that module is the recipe itself:
unless the server has imported it, and so torch, transformers and streamvxl, beforehand, every
worker imports them on its own (seen on an H200 host: 12 workers took 158 s to make the first
step, 3 took 41 s). So the server also preloads the main module, by its import name. runpy
then warns in every worker that the module it re-runs is already imported -- which is the point
-- so the workers, forked from the server with this module loaded, ignore that one warning.
"""

from __future__ import annotations

import multiprocessing
import sys
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol

__all__ = ["ExampleSource", "Prefetcher"]

# The fork server imports this module, so its children start with this filter: runpy's
# "'pkg.main' found in sys.modules after import of package 'pkg', but prior to execution"
# is what preloading the main module (below) does on purpose, once per worker.
warnings.filterwarnings("ignore", category=RuntimeWarning,
                        message=r".*found in sys\.modules after import of package.*")


class ExampleSource(Protocol):
    """What the pool needs: example ``index`` of the run, given what the plan adds for its
    step (the recipe: the stage's ratio set and mix)."""

    def example(self, index: int, *args: Any) -> Any: ...


_SOURCE: ExampleSource | None = None


def _install(source: ExampleSource) -> None:
    global _SOURCE
    # One thread per worker: by default each process takes every core for torch's CPU ops,
    # and W workers x all cores starve the training process of the CPU it needs to keep the
    # GPU fed (seen on a 16-core H100 host: 12 % GPU use, 4 s steps).
    import torch

    torch.set_num_threads(1)
    _SOURCE = source


def _preload(source: ExampleSource) -> list[str]:
    """Modules the fork server imports once for all workers: this one, the source's, and the
    main module when it was started as ``python -m name`` (workers re-run it by that name)."""
    names = [__name__, type(source).__module__]
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None and spec.name not in names:
        names.append(spec.name)
    return names


def _make(index: int, *args: Any) -> Any:
    assert _SOURCE is not None, "worker started without a source"
    return _SOURCE.example(index, *args)


class Prefetcher:
    """Examples of upcoming steps, made ahead by ``workers`` processes.

    Args:
        source: picklable; sent once to each worker.
        workers: process count (>= 1).
        plan: step -> (example indices, *args) of that step, each example made by
            ``source.example(index, *args)``; None past the run's end.
        depth: how many steps ahead to keep in flight.

    Example:
        >>> plan = lambda s: (range(32 * (s - 1), 32 * s), (2, 4))
        >>> with Prefetcher(source, workers=4, plan=plan) as pre:  # doctest: +SKIP
        ...     examples = pre.get(step=1)
    """

    def __init__(self, source: ExampleSource, workers: int,
                 plan: Callable[[int], tuple[Any, ...] | None],
                 depth: int = 2) -> None:
        if workers < 1:
            raise ValueError(f"Prefetcher needs workers >= 1, got {workers}")
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_preload(source))
        self._pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_install,
                                         initargs=(source,))
        self._plan = plan
        self._depth = depth
        self._pending: dict[int, list[Future]] = {}

    def _submit(self, step: int) -> None:
        spec = self._plan(step)
        if step not in self._pending and spec is not None:
            indices, *args = spec
            self._pending[step] = [self._pool.submit(_make, i, *args) for i in indices]

    def get(self, step: int) -> list[Any]:
        """The examples of ``step`` (made now if not prefetched), after queueing the next
        ``depth`` steps."""
        for s in range(step, step + 1 + self._depth):
            self._submit(s)
        futures = self._pending.pop(step)
        return [f.result() for f in futures]

    def close(self) -> None:
        for futures in self._pending.values():
            for f in futures:
                f.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
