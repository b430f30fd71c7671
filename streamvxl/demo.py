"""The surveillance demo: a synthetic camera clip streams into the default model, then questions.

A clip of the synthetic world (`streamvxl.world`, held-out split: unseen (shape, colour) pairs
and phrasings may appear) shows objects entering and leaving, one scene cut and one brief sign (the
needle). Its frames are pushed one by one, with their timestamps in seconds, into
``VideoMemory()`` -- the embedded default model, streamvxl-tiny -- which cuts and compresses them
online. At the end of the clip the memory is asked one question per task (attribute, order,
count, time, needle) from the world's own generator, and each answer is scored with the world's
own checker. The table shows question, answer, ground truth, match, the memory interval(s)
holding the evidence, and the time per answer.

Run it (``make demo`` does, in a fresh virtual environment)::

    streamvxl demo [--frames 160] [--seed 0] [--fast]

Example:
    >>> from streamvxl.demo import surveillance_clip
    >>> episode, qas = surveillance_clip(frames=48, seed=0)
    >>> [qa.task for qa in qas]
    ['attribute', 'order', 'count', 'time', 'needle']
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .answer import Answer, IntervalSpan
from .config import MemoryConfig
from .errors import CheckpointError
from .video_memory import VideoMemory
from .world import (
    HELD_OUT_COMBOS,
    QA,
    Episode,
    Task,
    WorldConfig,
    is_correct,
    make_questions,
    render,
    sample_episode,
)

log = logging.getLogger(__name__)

FPS = 2.0
"""Frames per second of the clip (the world's default): frame t is at t / FPS seconds."""
SIZE = 64
"""Frame height and width, pixels (streamvxl-tiny's image size)."""
DEMO_SEED_TAG = 0x5C3E
"""First word of every clip's seed: apart from training's and evaluation's streams."""
MAX_NEW_TOKENS = 16
"""Longest answer, tokens (as in `training.evaluate`): a 4-object order answer needs ~12."""
MAX_TRIES = 200
"""Clips drawn at most until one has a cut, a sign and a question of every task."""
DEMO_TASKS: tuple[Task, ...] = ("attribute", "order", "count", "time", "needle")
"""The tasks the demo asks, one question each: the ones the shipped model was trained on
(`VIDEO_TASKS` also holds "exist", "now" and "offline", which the next default model is to
learn)."""

MemoryFactory = Callable[[MemoryConfig], VideoMemory]
"""Builds the memory the clip streams into, from the demo's settings."""


def default_memory(config: MemoryConfig) -> VideoMemory:
    """``VideoMemory(config=...)``: the embedded default model, streamvxl-tiny."""
    return VideoMemory(config=config)


@dataclass(frozen=True)
class Row:
    """One question of the demo: the world's QA, the model's answer and the verdict."""

    qa: QA
    """The question, its ground truth and evidence frames, from `make_questions`."""
    answer: Answer
    """What the memory answered, with its time spans and timings."""
    correct: bool
    """``is_correct(answer.text, qa)``: the world's own checker."""


@dataclass(frozen=True)
class DemoResult:
    """Everything one run of the demo measured."""

    episode: Episode
    rows: list[Row]
    load_s: float
    """Seconds to build the memory (model load)."""
    ingest_s: float
    """Seconds to push every frame and close the last interval."""
    memory_tokens: int
    """Tokens the memory retained at the end (sink + VSTs)."""


def surveillance_clip(frames: int = 160, seed: int = 0) -> tuple[Episode, list[QA]]:
    """A held-out clip with a scene cut and one sign, and one question per video task.

    Deterministic in (frames, seed): clips are drawn until one supports every task.

    Raises:
        ValueError: no such clip in `MAX_TRIES` draws (``frames`` too small).
    """
    world = WorldConfig(num_frames=frames, fps=FPS, height=SIZE, width=SIZE, min_objects=3,
                        max_objects=4, cut_prob=1.0, max_cuts=1, sign_prob=1.0, max_signs=1)
    for attempt in range(MAX_TRIES):
        rng = np.random.default_rng([DEMO_SEED_TAG, seed, frames, attempt])
        episode = sample_episode(rng, world, split="eval")
        qas = [qa for task in DEMO_TASKS
               for qa in make_questions(episode, rng, "eval", (task,), n=1)]
        if episode.cuts and len(episode.signs) == 1 and len(qas) == len(DEMO_TASKS):
            return episode, qas
    raise ValueError(f"no {frames}-frame clip with a cut, a sign and every task in {MAX_TRIES} "
                     "draws; use more frames (>= 32)")


def run_demo(frames: int = 160, seed: int = 0, max_new_tokens: int = MAX_NEW_TOKENS,
             memory_factory: MemoryFactory | None = None) -> DemoResult:
    """Render the clip, stream it frame by frame into a memory, and ask every question.

    Args:
        frames: clip length (at `FPS` frames per second).
        seed: selects the clip and its questions.
        max_new_tokens: longest answer, tokens.
        memory_factory: builds the memory; None: `default_memory` (streamvxl-tiny).

    Raises:
        CheckpointError: the model is not available (the default one: its weights missing).
    """
    episode, qas = surveillance_clip(frames, seed)
    video = render(episode)  # (F, H, W, 3) uint8
    stamps = episode.timestamps()  # (F,) seconds
    # MemoryConfig's defaults: ratio 8, the model's encoder window, and the interval cutting
    # the model was trained with (streamvxl-tiny names it in its weights' metadata)
    config = MemoryConfig()
    t0 = time.perf_counter()
    mem = (memory_factory or default_memory)(config)
    load_s = time.perf_counter() - t0
    log.info("memory ready in %.1f s; streaming %d frames (%.0f s of video at %g fps)", load_s,
             frames, episode.duration, FPS)

    every = max(1, frames // 8)
    t0 = time.perf_counter()
    with mem:
        # push returns at once: the memory's worker takes the frames in behind it
        for i, (frame, ts) in enumerate(zip(video, stamps, strict=True)):
            mem.push(frame, timestamp=float(ts))
            if (i + 1) % every == 0 or i + 1 == frames:
                s = mem.stats()
                log.info("pushed %d/%d (t=%.1f s): %d in memory, %d intervals closed, "
                         "%d memory tokens, %.1f s behind", i + 1, frames, ts, s.frames_seen,
                         s.intervals_closed, s.memory_tokens, s.lag)
        mem.flush()  # end of the clip: waits for the backlog, then the last interval
        ingest_s = time.perf_counter() - t0

        rows = []
        for qa in qas:
            answer = mem.ask(qa.question, max_new_tokens=max_new_tokens)
            rows.append(Row(qa, answer, is_correct(answer.text, qa)))
            log.info("%s: %r -> %r (%.0f ms)", qa.task, qa.question, answer.text,
                     1000 * answer.timings.total)
        tokens = mem.stats().memory_tokens
    return DemoResult(episode, rows, load_s, ingest_s, tokens)


# -- the printed report ----------------------------------------------------------------------
def _seconds(a: float, b: float) -> str:
    return f"{a:.1f}s" if a == b else f"{a:.1f}-{b:.1f}s"


def _span(i: int, s: IntervalSpan) -> str:
    return f"#{i + 1} " + _seconds(s.t_start, s.t_end) + (f" r{s.ratio}" if s.ratio else " raw")


def evidence_seconds(qa: QA, fps: float) -> tuple[float, float]:
    """Times of the first and last frame that show the ground truth."""
    start, stop = qa.evidence  # frames [start, stop)
    return start / fps, (stop - 1) / fps


def evidence_spans(row: Row, fps: float) -> list[int]:
    """Indices of the answer's time spans that hold the frames showing its ground truth."""
    a, b = evidence_seconds(row.qa, fps)
    return [i for i, s in enumerate(row.answer.intervals) if s.t_start <= b and s.t_end >= a]


def _evidence(row: Row, fps: float) -> str:
    held = evidence_spans(row, fps)
    where = "-" if not held else f"#{held[0] + 1}" + (f"-#{held[-1] + 1}" if len(held) > 1
                                                      else "")
    return f"{_seconds(*evidence_seconds(row.qa, fps))} in {where}"


def describe_clip(episode: Episode) -> str:
    """One line per fact of the clip: objects with their times, the sign, the cuts."""
    f = episode.fps
    lines = [f"clip: {episode.num_frames} frames at {f:g} fps ({episode.duration:.0f} s), "
             f"{episode.width}x{episode.height}, held-out split"]
    lines += [f"  {o.name}: {_seconds(o.t_in / f, (o.t_out - 1) / f)}"
              + (" (a pair never seen in training)" if o.combo in HELD_OUT_COMBOS else "")
              for o in episode.objects]
    lines += [f"  sign {g.text!r}: {_seconds(g.t_in / f, (g.t_out - 1) / f)}"
              for g in episode.signs]
    lines += [f"  scene cut at {t / f:.1f}s" for t in episode.cuts]
    return "\n".join(lines)


def _wrap(items: Sequence[str], width: int = 100) -> list[str]:
    """Comma-separated items on indented lines of at most ``width`` characters."""
    lines = [""]
    for item in items:
        if lines[-1] and len(lines[-1]) + len(item) + 4 > width:
            lines.append("")
        lines[-1] += (", " if lines[-1] else "") + item
    return ["  " + x for x in lines]


def format_table(result: DemoResult) -> str:
    """The report: the clip, ingest speed, memory spans and one table row per question."""
    ep, rows = result.episode, result.rows
    spans = rows[0].answer.intervals if rows else []
    header = ("#", "task", "question", "answer", "truth", "ok", "evidence: time in spans",
              "ms")
    cells = [(str(i + 1), r.qa.task, r.qa.question + ("*" if r.qa.novel_phrasing else ""),
              r.answer.text or "(empty)", r.qa.answer, "yes" if r.correct else "no",
              _evidence(r, ep.fps),
              f"{1000 * r.answer.timings.total:.0f}") for i, r in enumerate(rows)]
    widths = [max(len(c[k]) for c in [header, *cells]) for k in range(len(header))]

    def line(c: Sequence[str]) -> str:
        return "| " + " | ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)) + " |"

    n_ok = sum(r.correct for r in rows)
    mean_ms = 1000 * np.mean([r.answer.timings.total for r in rows]) if rows else 0.0
    return "\n".join([
        describe_clip(ep),
        f"ingest: {ep.num_frames} frames in {result.ingest_s:.1f} s = "
        f"{ep.num_frames / result.ingest_s:.1f} frames/s (model loaded in {result.load_s:.1f} s)",
        f"memory: {len(spans)} intervals, {result.memory_tokens} tokens; every answer drew on "
        "these time spans (r = compression ratio):",
        *_wrap([_span(i, s) for i, s in enumerate(spans)]),
        "",
        line(header),
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
        *(line(c) for c in cells),
        "",
        f"{n_ok}/{len(rows)} correct (streamvxl.world.is_correct); {mean_ms:.0f} ms per answer; "
        "* = held-out phrasing",
    ])


def main(argv: Sequence[str] | None = None, memory_factory: MemoryFactory | None = None) -> int:
    """Run the demo and print its table; 0 on success, 2 if the model is not available."""
    p = argparse.ArgumentParser(prog="streamvxl demo", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=None,
                   help="clip length in frames at 2 fps (default 160; 48 with --fast)")
    p.add_argument("--seed", type=int, default=0, help="selects the clip and its questions")
    p.add_argument("--fast", action="store_true", help="a short clip (48 frames)")
    args = p.parse_args(argv)
    if args.frames is not None and args.frames < 32:
        p.error("--frames must be >= 32 (the clip needs room for a cut, a sign and objects)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    frames = args.frames or (48 if args.fast else 160)
    try:
        result = run_demo(frames, args.seed, memory_factory=memory_factory)
    except CheckpointError as e:
        which = "the default model (streamvxl-tiny)" if memory_factory is None else "the model"
        print(f"surveillance demo: {which} is not available: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
