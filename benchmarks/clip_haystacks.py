"""Which text-to-frame scorer finds the object a question names, over whole haystacks.

Retrieval and citations by the frames scorer (`streamvxl.memory.clip_scorer`) rest on one
property: over hours of frames, the frames that best match a question's words show the object it
names, not a look-alike (another object of its colour or its shape) an hour away. This measures
that property alone, with no language model, so CLIP weights are compared on many fresh
haystacks in minutes on a CPU: every frame of each haystack `benchmarks.recall_eval` builds (the
same seeds, depths and planted objects) is embedded by each scorer, and each of its questions
about a planted object ("when did the yellow diamond appear?", "what colour was the ring?", ...)
is scored against every frame. Per scorer and question form: whether the best-matching frame
shows the named object, and the object's best rank among the frames of other objects' spans.

Compare the shipped world CLIP with a candidate, paired on the same questions::

    python -m benchmarks.clip_haystacks --hours 4 --haystacks 8 --first-seed 100 \\
        --candidate C/world-clip.safetensors --out docs/results/clip_haystacks

It logs progress per haystack and prints a table; ``--out`` writes ``<out>.json`` and
``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.recall_eval import FPS, WHEN_FORMS, haystack, named_spans

log = logging.getLogger("benchmarks.clip_haystacks")

SHIPPED = "shipped"


def load_scorers(candidates: list[Path]) -> dict[str, Any]:
    """The shipped world CLIP and each candidate file (the same architecture), by name."""
    from streamvxl.memory.clip_scorer import ClipScorer

    return {SHIPPED: ClipScorer.default(), **{p.stem: ClipScorer.world(p) for p in candidates}}


def haystack_rows(hours: float, depth: float, seed: int, scorers: dict[str, Any]
                  ) -> list[dict[str, Any]]:
    """Every scorer on every planted-object question of one haystack."""
    frames = int(round(hours * 3600 * FPS))
    hay = haystack(frames, depth, seed)
    questions = hay.event_questions(np.random.default_rng(seed))
    anything = np.zeros(frames, dtype=bool)  # frames showing some object: the look-alikes'
    for seg, off in zip(hay.segments, hay.offsets, strict=True):
        for o in seg.objects:
            anything[off + o.t_in:off + o.t_out] = True
    looks = {name: torch.cat([s.embed_frames(chunk) for chunk in hay.chunks()])  # (F, E)
             for name, s in scorers.items()}
    rows = []
    for qa in questions:
        named = named_spans(qa, hay.planted)  # frames [lo, hi) showing the named object(s)
        shows = np.zeros(frames, dtype=bool)
        for lo, hi in named:
            shows[lo:hi] = True
        others = anything & ~shows  # frames of other objects, not the named one
        row: dict[str, Any] = {"hours": hours, "seed": seed, "depth": depth, "form": qa.form,
                               "question": qa.question}
        for name, s in scorers.items():
            cos = (looks[name] @ s.embed_text([qa.question])[0]).numpy()  # (F,)
            best_named = cos[shows].max()
            row[name] = {"top_shows_object": bool(shows[int(cos.argmax())]),
                         "outscored_by": int((cos[others] > best_named).sum()),
                         "best_named": float(best_named), "best_other": float(cos[others].max())
                         if others.any() else None}
        rows.append(row)
    return rows


def summary(rows: list[dict[str, Any]], names: list[str]) -> str:
    """One table: per length and question kind, how often each scorer's best frame shows the
    named object, and the paired difference of the last scorer against the first."""
    head = ["hours", "questions", "n", *[f"{n}: best frame shows it" for n in names]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for hours in sorted({r["hours"] for r in rows}):
        for kind, keep in (("when", lambda f: f in WHEN_FORMS),
                           ("others", lambda f: f not in WHEN_FORMS), ("all", lambda f: True)):
            sel = [r for r in rows if r["hours"] == hours and keep(r["form"])]
            if not sel:
                continue
            cells = [f"{sum(r[n]['top_shows_object'] for r in sel)} / {len(sel)}" for n in names]
            lines.append(f"| {hours:g} | {kind} | {len(sel)} | " + " | ".join(cells) + " |")
    if len(names) > 1:
        a, b = names[0], names[-1]
        won = sum(r[b]["top_shows_object"] and not r[a]["top_shows_object"] for r in rows)
        lost = sum(r[a]["top_shows_object"] and not r[b]["top_shows_object"] for r in rows)
        lines.append(f"\nPaired, {b} against {a}: right only with {b} {won}, only with {a} "
                     f"{lost} (of {len(rows)} questions).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", default="4", help="stream lengths, comma-separated")
    p.add_argument("--depths", default="0.1,0.3,0.5,0.7,0.9")
    p.add_argument("--haystacks", type=int, default=8, help="haystacks per length")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--candidate", type=Path, action="append", default=[],
                   help="world CLIP weights (.safetensors) to compare with the shipped ones")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    scorers = load_scorers(args.candidate)
    depths = [float(d) for d in args.depths.split(",")]
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    cases = [(float(h), depths[k % len(depths)], args.first_seed + k)
             for h in args.hours.split(",") for k in range(args.haystacks)]
    for i, (hours, depth, seed) in enumerate(cases, 1):
        got = haystack_rows(hours, depth, seed, scorers)
        rows += got
        log.info("[%d/%d] %.0f s: %g h seed %d: %s", i, len(cases), time.perf_counter() - start,
                 hours, seed, ", ".join(f"{n} {sum(r[n]['top_shows_object'] for r in got)}/"
                                        f"{len(got)}" for n in scorers))
    table = summary(rows, list(scorers))
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
        command = " ".join(argv if argv is not None else sys.argv[1:])
        args.out.with_suffix(".md").write_text(
            f"# Text-to-frame scorers over whole haystacks\n\n`python -m "
            f"benchmarks.clip_haystacks {command}` ({os.cpu_count()} CPU cores)\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
