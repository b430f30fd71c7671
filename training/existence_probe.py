"""Does a model tell whether a still shows a thing? Held-out stills asked "is there a <thing>?".

Existence over a video needs two skills: binding a named colour and shape to what the frames
showed, and finding it anywhere in a compressed memory. No model told present from absent
things in a video -- its uncompressed memory included (docs/results.md) -- so this probe asks
where only the first is left: one still of 1-3 objects, each question about a present thing or
an absent one, both named the same ways (colour and shape, shape, or colour: the balanced
draw, `training.samples.EXIST_STILL_FORMS`). It reports the share of "yes" to present and to
absent things by naming: a model that reads the still says "yes" to the first and "no" to the
second; one that answers a prior says "yes" to both alike.

Run it (a minute or two on the CPU for 200 stills)::

    python -m training.existence_probe --model streamvxl/weights/streamvxl-tiny.safetensors \\
        --n 200 --ratios 16 --methods vst,full --out docs/results/existence

It writes ``<out>/<name>.json`` (settings, rows, every answer) and ``<name>.md``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamvxl.model.videoxl import VideoXL
from streamvxl.preprocess import Preprocessor
from streamvxl.world import WorldConfig, is_correct
from streamvxl.world.questions import naming
from training.baselines import Method, build_memory, encode_video
from training.evaluate import (
    answer_question,
    answering,
    digest_note,
    int_list,
    load_model_folder,
    model_digest,
    question_ids,
    report_parser,
    str_list,
)
from training.samples import existence_still_sample

log = logging.getLogger(__name__)

EXISTENCE_PROBE_SEED = 0xE715
"""Mixed into the seed, so the stills differ from every training and evaluation draw."""


def existence_probe(model: VideoXL | str | Path, tokenizer: Any = None, *, n: int = 200,
                    ratios: Sequence[int] = (16,), methods: Sequence[Method] = ("vst", "full"),
                    questions: int = 3, seed: int = 0, max_new_tokens: int = 4,
                    preprocess: Preprocessor | None = None, device: str | None = None
                    ) -> list[dict[str, Any]]:
    """One record per (still, question, method, ratio): ``{"still", "form", "naming",
    "question", "answer", "method", "ratio", "prediction", "yes", "correct"}``; ``full``
    (every raw token) is answered once per question, with ratio None. Stills are
    ``split="eval"``, up to ``questions`` distinct questions each."""
    if n < 1 or questions < 1:
        raise ValueError(f"n and questions must be >= 1, got {n} and {questions}")
    answer_with = answering(model, tokenizer, methods, preprocess=preprocess, device=device,
                            prompt=None, boundary=None, window=None,
                            max_new_tokens=max_new_tokens)
    runtime, settings, decoding = answer_with
    model = runtime.model
    world = WorldConfig(num_frames=1, height=model.image_size, width=model.image_size,
                        max_objects=3)
    rng = np.random.default_rng([EXISTENCE_PROBE_SEED, seed])
    records: list[dict[str, Any]] = []
    for i in range(n):
        sample = existence_still_sample(rng, world, "eval", n=questions)
        video = encode_video(runtime, [sample.frames], settings.boundary, world.fps,
                             name=f"still-{i}")
        for qa in sample.qa:
            q_ids = question_ids(answer_with, qa.question)
            for method in methods:
                for ratio in (None,) if method == "full" else ratios:
                    memory = build_memory(runtime, settings, video, method, ratio)
                    text = answer_question(memory, qa.question, q_ids, decoding)
                    records.append({
                        "still": i, "form": qa.form, "naming": naming(qa),
                        "question": qa.question, "answer": qa.answer, "method": method,
                        "ratio": ratio, "prediction": text,
                        "yes": text.strip().lower().startswith("yes"),
                        "correct": bool(is_correct(text, qa))})
        if (i + 1) % 50 == 0 or i + 1 == n:
            log.info("%d/%d stills", i + 1, n)
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


def markdown_table(rows: Sequence[dict[str, Any]], notes: Sequence[str] = ()) -> str:
    """A row per (method, ratio) and truth; a column per naming holding "yes" / asked."""
    by = {(r["method"], r["ratio"], r["answer"], r["naming"]): r for r in rows}
    namings = ("all", "both", "shape", "colour")
    lines = ["# Existence on one still: answers \"yes\" / asked", ""] + [f"- {n}" for n in notes]
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
    return "\n".join(lines + [""]) + "\n"


def main(argv: list[str] | None = None) -> list[Path]:
    p = report_parser("training.existence_probe", __doc__, "existence_stills")
    p.add_argument("--n", type=int, default=200, help="held-out stills")
    p.add_argument("--questions", type=int, default=3, help="questions per still")
    p.add_argument("--ratios", type=int_list, default=(16,), help="e.g. 2,16")
    p.add_argument("--methods", type=str_list, default=("vst", "full"), help="e.g. vst,full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    device = None if args.device == "auto" else args.device
    digest = model_digest(args.model)
    model, tokenizer, preprocess = load_model_folder(args.model, args.tokenizer, device)
    records = existence_probe(model, tokenizer, n=args.n, ratios=args.ratios,
                              methods=args.methods, questions=args.questions, seed=args.seed,
                              preprocess=preprocess)
    rows = summary_rows(records)
    settings = {"model": str(args.model), "model_tensors_sha256": digest, "n": args.n,
                "questions": args.questions, "ratios": list(args.ratios),
                "methods": list(args.methods), "seed": args.seed, "split": "eval"}
    notes = [f"model `{args.model}`{digest_note(settings)}; {args.n} held-out stills (seed "
             f"{args.seed}), up to {args.questions} questions each, present and absent things "
             "named alike; greedy answers"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{args.name}.json", out / f"{args.name}.md"
    js.write_text(json.dumps({"settings": settings, "rows": rows, "records": records}, indent=1))
    md.write_text(markdown_table(rows, notes))
    log.info("wrote %s, %s", js, md)
    return [js, md]


__all__ = ["existence_probe", "markdown_table", "summary_rows"]


if __name__ == "__main__":
    main()
