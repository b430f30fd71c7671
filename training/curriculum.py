"""How many steps a curriculum gets, sized to minutes of training -- and sized again on resume.

`training/train_default.sh` sizes its curriculum (a reading stage, ratios 2, 4, then 8-16) to
MINUTES of training at a step time (`training/train_reading.sh` its stills-only stage alike),
and a device call stops it after MAX_MINUTES with a checkpoint; the next call resumes it. The
step time is a guess from an earlier run (``STEP_S``) or a probe of a few steps, and a guess
can be far off: the same settings took 13.1 s a step on one H200 and 29 s on another, so a
curriculum sized for 50 steps stopped at step 27 with its cosine at 69 % of the peak learning
rate -- an export that never annealed. ``fit`` re-sizes the steps not yet taken so that the
curriculum ends within the minutes a call has left, from the step time the run itself
measured; the learning rate's cosine (`training.recipe.lr_factor`, a function of the current
total) then bends to end in this call.

    python -m training.curriculum step-s WORK/probe/metrics.jsonl     # 13.1
    python -m training.curriculum steps-done WORK/run                  # 27: its latest checkpoint
    python -m training.curriculum size --minutes 11 --step-s 13 --small-share 0.15
    python -m training.curriculum fit --stages '[[8, [2, 4]], [42, [8, 12, 16]]]' \\
        --run WORK/run --minutes 7       # [[8, [2, 4]], [33, [8, 12, 16]]] after 27 steps at 30 s

``size`` and ``fit`` print the stages as the recipe's ``--stages`` JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from training.checkpoint import LATEST

Stages = list[list[Any]]
"""The recipe's ``--stages``: ``[[steps, [ratios...]], ...]``, a stage may carry a third item
(its task mix)."""


def size(minutes: float, step_s: float, small_share: float, reading_steps: int = 0,
         reading_mix: dict[str, Any] | None = None, mix: dict[str, Any] | None = None,
         min_steps: int = 4) -> Stages:
    """A curriculum of ``minutes`` at ``step_s`` seconds a step (at least ``min_steps``): a
    reading stage of ``reading_steps`` first (out of the same minutes), then ``small_share`` of
    the rest at ratios 2, 4 and the others at 8, 12, 16 (DESIGN §8), each of those two with
    ``mix`` when given (else the run's)."""
    if minutes <= 0 or step_s <= 0:
        raise ValueError(f"minutes and step_s must be > 0, got {minutes}, {step_s}")
    if not 0.0 <= small_share <= 1.0:
        raise ValueError(f"small_share must be in [0, 1], got {small_share}")
    steps = max(min_steps, 2, int(minutes * 60 / step_s))
    reading = min(reading_steps, steps - 2)
    rest = steps - reading
    small = max(1, min(rest - 1, round(small_share * rest)))  # the large ratios keep a step
    reading_stage = [reading, [2, 4]] + ([reading_mix] if reading_mix is not None else [])
    stages: Stages = [reading_stage] if reading > 0 else []
    tail = [mix] if mix is not None else []
    return stages + [[small, [2, 4], *tail], [rest - small, [8, 12, 16], *tail]]


def measured_step_s(metrics: Path) -> float:
    """The median step time of a run's ``metrics.jsonl`` past its first third (the first steps
    compile, warm caches and wait for the data processes)."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{metrics} has no steps")
    return float(statistics.median(r["step_s"] for r in rows[len(rows) // 3:]))


def steps_done(run: Path) -> int:
    """The step of the run's latest checkpoint (0 when it has none)."""
    latest = run / LATEST
    return int(json.loads(latest.read_text())["step"]) if latest.exists() else 0


def fit(stages: Stages, done: int, steps_left: int) -> Stages:
    """``stages`` with the steps after ``done`` cut (or stretched) to ``steps_left``: the steps
    taken stay as they were, each stage's untaken steps shrink (or grow) in proportion, the
    rounding goes to the last stage (so it keeps at least one); a stage left with no step at
    all is dropped; a curriculum already ended comes back as it was."""
    if done < 0 or steps_left < 1:
        raise ValueError(f"need done >= 0 and steps_left >= 1, got {done}, {steps_left}")
    taken, planned = [], []  # per stage: steps before `done`, steps after it
    end = 0
    for stage in stages:
        start, end = end, end + int(stage[0])
        taken.append(max(0, min(end, done) - start))
        planned.append(int(stage[0]) - taken[-1])
    remaining = sum(planned)
    if remaining == 0:  # a curriculum that has ended is not opened again
        return [list(stage) for stage in stages]
    planned = [p * steps_left // remaining for p in planned]  # each stage keeps its share
    planned[-1] += steps_left - sum(planned)  # the rounding: the last stage keeps >= 1 step
    out: Stages = []
    for stage, before, after in zip(stages, taken, planned, strict=True):
        if before + after > 0:
            out.append([before + after, *stage[1:]])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.curriculum", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("size", help="a curriculum of MINUTES at STEP_S seconds a step")
    s.add_argument("--minutes", type=float, required=True)
    s.add_argument("--step-s", type=float, required=True)
    s.add_argument("--small-share", type=float, required=True)
    s.add_argument("--reading-steps", type=int, default=0)
    s.add_argument("--reading-mix", type=json.loads, default=None)
    s.add_argument("--mix", type=json.loads, default=None,
                   help="the task mix of the ratio stages (default: the run's)")
    s.add_argument("--min-steps", type=int, default=4)
    t = sub.add_parser("step-s", help="a run's median step time past its first third")
    t.add_argument("metrics", type=Path, help="the run's metrics.jsonl")
    d = sub.add_parser("steps-done", help="the step of a run's latest checkpoint (0: none)")
    d.add_argument("run", type=Path, help="the run's output folder (latest.json)")
    f = sub.add_parser("fit", help="the steps a resumed run has not taken, into MINUTES")
    f.add_argument("--stages", type=json.loads, required=True)
    f.add_argument("--run", type=Path, required=True,
                   help="the run's output folder (latest.json, metrics.jsonl)")
    f.add_argument("--minutes", type=float, required=True,
                   help="training minutes this call has for the rest")
    args = parser.parse_args(argv)
    if args.command == "step-s":
        print(measured_step_s(args.metrics))
        return
    if args.command == "steps-done":
        print(steps_done(args.run))
        return
    if args.command == "size":
        stages = size(args.minutes, args.step_s, args.small_share, args.reading_steps,
                      args.reading_mix, args.mix, args.min_steps)
    else:
        done = steps_done(args.run)
        step_s = measured_step_s(args.run / "metrics.jsonl")
        left = max(1, int(args.minutes * 60 / step_s))
        stages = fit(args.stages, done, left)
        print(f"{done} steps taken at {step_s:.1f} s a step; {left} more fit in "
              f"{args.minutes} min", file=sys.stderr)
    print(json.dumps(stages))


if __name__ == "__main__":
    main()
