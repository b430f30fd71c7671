"""Does a model tell whether a still shows a thing? Held-out stills asked "is there a <thing>?".

Existence over a video needs two skills: binding a named colour and shape to what the frames
showed, and finding it anywhere in a compressed memory. No model told present from absent
things in a video -- its uncompressed memory included (docs/results.md) -- so this probe asks
where only the first is left: one still of 1-3 objects, each question about a present thing or
an absent one, both named the same ways (colour and shape, shape, or colour: the balanced
draw, `training.samples.EXIST_STILL_FORMS`). It reports the share of "yes" to present and to
absent things by naming: a model that reads the still says "yes" to the first and "no" to the
second; one that answers a prior says "yes" to both alike. Shares of "yes" mix the skill with
the prior, so it also reports how well the model *ranks* present above absent things by the
score a watch condition fires on (log p(yes) - log p(no) of the first answer token,
`streamvxl.runtime.conditions.score`): the area under the ROC curve, 0.5 for a model that
does not tell them apart whatever its prior, 1.0 for one that a threshold separates.

``--frames N`` asks the same of held-out videos of N frames instead (the world's existence
questions, absent things named as present ones, `make_questions` with ``exist_naming``
"balanced"): a model that answers on stills may still answer a prior over a video's memory,
and the ranking tells a skill that a threshold misplaces from one that is not there (100
videos of 24 frames: 13 minutes on two cores at 16 tokens a frame, 36 at 64, with ``full``).

Run it (a minute or two on the CPU for 200 stills)::

    python -m training.existence_probe --model streamvxl/weights/streamvxl-tiny.safetensors \\
        --n 200 --ratios 16 --methods vst,full --out docs/results/default_model

It writes ``<out>/<name>.json`` (settings, rows, every answer) and ``<name>.md``.
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from streamvxl.model.videoxl import VideoXL
from streamvxl.preprocess import Preprocessor
from streamvxl.runtime.conditions import score, yes_no_ids
from streamvxl.world import WorldConfig, is_correct
from streamvxl.world.questions import EXIST_YES_NO_FORMS, naming
from training.baselines import Memory, Method, build_memory, encode_video
from training.evaluate import (
    Decoding,
    answering,
    decode_answer,
    digest_note,
    int_list,
    load_model_folder,
    model_digest,
    question_ids,
    report_parser,
    str_list,
    write_json_and_markdown,
)
from training.samples import Sample, existence_still_sample, video_sample

log = logging.getLogger(__name__)

EXISTENCE_PROBE_SEED = 0xE715
"""Mixed into the seed, so the stills differ from every training and evaluation draw."""


def draw_sample(rng: np.random.Generator, world: WorldConfig, questions: int) -> Sample:
    """A held-out still (``world.num_frames`` 1) or video asked up to ``questions`` yes / no
    existence questions, present and absent things named alike (a video with none is
    redrawn)."""
    if world.num_frames == 1:
        return existence_still_sample(rng, world, "eval", n=questions)
    while True:
        sample = video_sample(rng, world, "eval", tasks=("exist",), n=2 * questions,
                              exist_naming="balanced")
        qa = tuple(q for q in sample.qa if q.form in EXIST_YES_NO_FORMS)[:questions]
        if qa:
            return replace(sample, qa=qa)


def answer_and_score(memory: Memory, question: str, question_ids: Any, decoding: Decoding,
                     yes: list[int], no: list[int]) -> tuple[str, float]:
    """The greedy answer to ``question`` (its chat-wrapped ids (Q,)) over ``memory`` and its
    first token's log p(yes) - log p(no) (`training.evaluate.decode_answer`, its first step's
    logits scored)."""
    text, out = decode_answer(memory, question_ids, decoding, keep_logits=True)
    margin = score(out.generation.step_logits[0], yes, no)
    log.debug("%s %s r=%s | %s -> %r (%.2f)", memory.video.name, memory.method, memory.ratio,
              question, text, margin)
    return text, margin


def rank_auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """The chance that a positive scores above a negative (ties count half): the area under
    the ROC curve.

    Example:
        >>> rank_auc([2.0, 3.0], [1.0, 2.0])
        0.875
    """
    if not len(positive) or not len(negative):
        raise ValueError("rank_auc needs scores on both sides")
    pos, neg = np.asarray(positive, float)[:, None], np.asarray(negative, float)[None]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def existence_probe(model: VideoXL | str | Path, tokenizer: Any = None, *, n: int = 200,
                    ratios: Sequence[int] = (16,), methods: Sequence[Method] = ("vst", "full"),
                    questions: int = 3, seed: int = 0, max_new_tokens: int = 4,
                    preprocess: Preprocessor | None = None, device: str | None = None,
                    frames: int = 1) -> list[dict[str, Any]]:
    """One record per (still, question, method, ratio): ``{"still", "form", "naming",
    "question", "answer", "method", "ratio", "prediction", "yes", "correct", "score"}``
    (``score``: log p(yes) - log p(no) of the first answer token); ``full``
    (every raw token) is answered once per question, with ratio None. Stills are
    ``split="eval"``, up to ``questions`` distinct questions each; ``frames`` > 1: videos
    of that many frames instead (``"still"`` numbers them)."""
    if n < 1 or questions < 1 or frames < 1:
        raise ValueError(f"n, questions and frames must be >= 1, got {n}, {questions} and "
                         f"{frames}")
    answer_with = answering(model, tokenizer, methods, preprocess=preprocess, device=device,
                            prompt=None, boundary=None, window=None,
                            max_new_tokens=max_new_tokens)
    runtime, settings, decoding = answer_with
    yes, no = yes_no_ids(runtime.tokenizer)
    model = runtime.model
    world = WorldConfig(num_frames=frames, height=model.image_size, width=model.image_size,
                        max_objects=3)
    # the stills' draw as it always was; videos of each length a draw of their own
    rng = np.random.default_rng([EXISTENCE_PROBE_SEED, seed] + ([frames] if frames > 1 else []))
    records: list[dict[str, Any]] = []
    for i in range(n):
        sample = draw_sample(rng, world, questions)
        video = encode_video(runtime, [sample.frames], settings.boundary, world.fps,
                             name=f"still-{i}", timestamps=sample.timestamps)
        for qa in sample.qa:
            q_ids = question_ids(answer_with, qa.question)
            for method in methods:
                for ratio in (None,) if method == "full" else ratios:
                    memory = build_memory(runtime, settings, video, method, ratio)
                    text, said = answer_and_score(memory, qa.question, q_ids, decoding, yes, no)
                    records.append({
                        "still": i, "form": qa.form, "naming": naming(qa),
                        "question": qa.question, "answer": qa.answer, "method": method,
                        "ratio": ratio, "prediction": text,
                        "yes": text.strip().lower().startswith("yes"),
                        "correct": bool(is_correct(text, qa)), "score": said})
        if (i + 1) % 50 == 0 or i + 1 == n:
            log.info("%d/%d %s", i + 1, n, "stills" if frames == 1 else "videos")
    return records


def summary_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, ratio, answer, naming -- and "all" namings): questions, "yes" answers and
    right answers."""
    tally: dict[tuple[str, Any, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        for how in ("all", r["naming"]):
            cell = tally[(r["method"], r["ratio"], r["answer"], how)]
            cell[0] += 1
            cell[1] += r["yes"]
            cell[2] += r["correct"]
    return [{"method": m, "ratio": q, "answer": a, "naming": k, "n": c[0], "yes": c[1],
             "correct": c[2]} for (m, q, a, k), c in tally.items()]


def ranking_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, ratio, naming -- and "all" namings) with things both there and not there:
    `rank_auc` of the scores of present over absent things, and how many of each."""
    scores: dict[tuple[str, Any, str], dict[str, list[float]]] = defaultdict(
        lambda: {"yes": [], "no": []})
    for r in records:
        for how in ("all", r["naming"]):
            scores[(r["method"], r["ratio"], how)][r["answer"]].append(r["score"])
    return [{"method": m, "ratio": q, "naming": k, "auc": rank_auc(s["yes"], s["no"]),
             "present": len(s["yes"]), "absent": len(s["no"])}
            for (m, q, k), s in scores.items() if s["yes"] and s["no"]]


def markdown_table(rows: Sequence[dict[str, Any]], notes: Sequence[str] = (),
                   ranking: Sequence[dict[str, Any]] = (), frames: int = 1) -> str:
    """A row per (method, ratio) and truth; a column per naming holding "yes" / asked; then,
    with ``ranking``, the area under the ROC curve per (method, ratio) and naming."""
    by = {(r["method"], r["ratio"], r["answer"], r["naming"]): r for r in rows}
    namings = ("all", "both", "shape", "colour")
    where = "one still" if frames == 1 else f"videos of {frames} frames"
    lines = [f"# Existence on {where}: answers \"yes\" / asked", ""] + [f"- {n}" for n in notes]
    lines += ["", "| method | ratio | the thing is | " + " | ".join(namings) + " | right |",
              "|---|---:|---|" + "---:|" * (len(namings) + 1)]
    for m, q in dict.fromkeys((r["method"], r["ratio"]) for r in rows):
        for truth, label in (("yes", "there"), ("no", "not there")):
            cells = [by.get((m, q, truth, k)) for k in namings]
            if cells[0] is None:
                continue
            lines.append(f"| {m} | {'-' if q is None else f'{q}x'} | {label} | " + " | ".join(
                "-" if c is None else f"{c['yes']} / {c['n']}" for c in cells)
                + f" | {100 * cells[0]['correct'] / cells[0]['n']:.1f} % |")
    if ranking:
        auc = {(r["method"], r["ratio"], r["naming"]): r["auc"] for r in ranking}
        lines += ["", "Ranking present above absent things by log p(yes) - log p(no) (area "
                  "under the ROC curve; 0.5: not told apart):", "",
                  "| method | ratio | " + " | ".join(namings) + " |",
                  "|---|---:|" + "---:|" * len(namings)]
        for m, q in dict.fromkeys((r["method"], r["ratio"]) for r in ranking):
            lines.append(f"| {m} | {'-' if q is None else f'{q}x'} | " + " | ".join(
                "-" if (m, q, k) not in auc else f"{auc[(m, q, k)]:.2f}" for k in namings)
                + " |")
    return "\n".join(lines + [""]) + "\n"


def main(argv: list[str] | None = None) -> list[Path]:
    p = report_parser("training.existence_probe", __doc__, "existence_stills")
    p.add_argument("--n", type=int, default=200, help="held-out stills")
    p.add_argument("--questions", type=int, default=3, help="questions per still")
    p.add_argument("--ratios", type=int_list, default=(16,), help="e.g. 2,16")
    p.add_argument("--methods", type=str_list, default=("vst", "full"), help="e.g. vst,full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=1,
                   help="1: stills; more: held-out videos of that many frames")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    device = None if args.device == "auto" else args.device
    digest = model_digest(args.model)
    model, tokenizer, preprocess = load_model_folder(args.model, args.tokenizer, device)
    records = existence_probe(model, tokenizer, n=args.n, ratios=args.ratios,
                              methods=args.methods, questions=args.questions, seed=args.seed,
                              preprocess=preprocess, frames=args.frames)
    rows, ranking = summary_rows(records), ranking_rows(records)
    settings = {"model": str(args.model), "model_tensors_sha256": digest, "n": args.n,
                "questions": args.questions, "ratios": list(args.ratios),
                "methods": list(args.methods), "seed": args.seed, "split": "eval",
                "frames": args.frames}
    drawn = "stills" if args.frames == 1 else f"videos of {args.frames} frames"
    notes = [f"model `{args.model}`{digest_note(settings)}; {args.n} held-out {drawn} (seed "
             f"{args.seed}), up to {args.questions} questions each, present and absent things "
             "named alike; greedy answers"]
    return write_json_and_markdown(args.out, args.name, {"settings": settings, "rows": rows,
                                                         "ranking": ranking, "records": records},
                                   markdown_table(rows, notes, ranking, args.frames))


__all__ = ["answer_and_score", "draw_sample", "existence_probe", "markdown_table", "rank_auc", "ranking_rows",
           "summary_rows"]


if __name__ == "__main__":
    main()
