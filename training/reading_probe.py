"""Where does a model misread signs? Held-out stills, one sign each, asked what it says.

The needle evaluations mix two skills: reading the sign and keeping it through a long
compressed memory. On a single still only the first is left, and every answer is split by what
might make it hard: a word (one of 32) or a number (digits in order), its length, and whether
its characters fall in one visual token or straddle a token boundary (a visual token covers a
``cell`` x ``cell`` pixel square: the patches one pooled token averages).

Run it (a few minutes on the CPU for 300 stills)::

    python -m training.reading_probe --model streamvxl/weights/streamvxl-tiny.safetensors \\
        --n 300 --ratios 2,16 --methods vst,full --number-prob 0.5 --out docs/results

It writes ``<out>/<name>.json`` (settings, rows, every answer) and ``<name>.md``.

Example:
    >>> sign_cells(Sign("42", 0, 1, x=10, y=0), cell=16)   # glyphs at x 12..22: cells 0 and 1
    (0, 1)
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamvxl.intervals import BoundaryConfig
from streamvxl.model.videoxl import VideoXL
from streamvxl.preprocess import Preprocessor
from streamvxl.prompt import PromptTemplate
from streamvxl.world import Sign, WorldConfig, is_correct
from streamvxl.world.font import text_size
from training.baselines import Method, build_memory, encode_video
from training.batch import READING_FORMS
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
    write_json_and_markdown,
)
from training.misreads import markdown_misreads, misread_rows
from training.samples import single_image_sample

log = logging.getLogger(__name__)

READING_PROBE_SEED = 0x5EAD
"""Mixed into the seed, so the stills differ from every training and evaluation draw."""


def sign_cells(sign: Sign, cell: int) -> tuple[int, int]:
    """The first and last token column the sign's characters fall in (the board's 2-font-pixel
    margin excluded): equal when the text sits inside one token's columns."""
    first = sign.x + 2 * sign.scale
    _, width = text_size(sign.text, sign.scale)
    return first // cell, (first + width - 1) // cell


def reading_probe(model: VideoXL | str | Path, tokenizer: Any = None, *, n: int = 200,
                  ratios: Sequence[int] = (2, 16), methods: Sequence[Method] = ("vst", "full"),
                  number_prob: float = 0.5, seed: int = 0,
                  boundary: BoundaryConfig | None = None, window: int | None = None,
                  max_new_tokens: int = 8, prompt: PromptTemplate | None = None,
                  preprocess: Preprocessor | None = None, device: str | None = None
                  ) -> list[dict[str, Any]]:
    """One record per (still, method, ratio): ``{"still", "method", "ratio", "text", "kind",
    "length", "straddles", "answer", "prediction", "correct"}``; ``full`` (every raw token)
    is answered once per still, with ratio None. Stills are ``split="eval"``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    answer_with = answering(model, tokenizer, methods, preprocess=preprocess, device=device,
                            prompt=prompt, boundary=boundary, window=window,
                            max_new_tokens=max_new_tokens)
    runtime, settings, decoding = answer_with
    model = runtime.model
    world = WorldConfig(num_frames=1, height=model.image_size, width=model.image_size,
                        max_objects=3, number_prob=number_prob)
    cell = model.image_size // int(round(model.visual_tokens_per_frame ** 0.5))  # pixels per token
    rng = np.random.default_rng([READING_PROBE_SEED, seed])
    records: list[dict[str, Any]] = []
    for i in range(n):
        sample = single_image_sample(rng, world, "eval", n=1, sign=True, forms=READING_FORMS)
        (sign,) = sample.episodes[0].signs
        qa = sample.qa[0]
        first, last = sign_cells(sign, cell)
        about = {"still": i, "text": sign.text, "kind": "number" if sign.is_number else "word",
                 "length": len(sign.text), "straddles": first != last}
        video = encode_video(runtime, [sample.frames], settings.boundary, world.fps,
                             name=f"still-{i}", timestamps=sample.timestamps)
        q_ids = question_ids(answer_with, qa.question)
        for method in methods:
            for ratio in (None,) if method == "full" else ratios:
                memory = build_memory(runtime, settings, video, method, ratio)
                text = answer_question(memory, qa.question, q_ids, decoding)
                records.append({**about, "method": method, "ratio": ratio,
                                "answer": qa.answer, "prediction": text,
                                "correct": bool(is_correct(text, qa))})
        if (i + 1) % 50 == 0 or i + 1 == n:
            log.info("%d/%d stills", i + 1, n)
    return records


def summary_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Right / asked per (method, ratio) and group: all, each kind, each kind x straddling,
    each number length."""
    tally: dict[tuple[str, Any, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        where = "straddles" if r["straddles"] else "one token"
        groups = ["all", r["kind"], f"{r['kind']}, {where}"]
        if r["kind"] == "number":
            groups.append(f"number of {r['length']} digit{'s' * (r['length'] > 1)}")
        for g in groups:
            cell = tally[(r["method"], r["ratio"], g)]
            cell[0] += r["correct"]
            cell[1] += 1
    return [{"method": m, "ratio": q, "group": g, "correct": c, "n": k}
            for (m, q, g), (c, k) in tally.items()]


def markdown_table(rows: Sequence[dict[str, Any]], notes: Sequence[str] = ()) -> str:
    """Groups down, (method, ratio) across, right / asked and percent."""
    columns = list(dict.fromkeys((r["method"], r["ratio"]) for r in rows))
    groups = list(dict.fromkeys(r["group"] for r in rows))
    cell = {(r["method"], r["ratio"], r["group"]): r for r in rows}
    lines = ["# Reading signs on stills", ""] + [f"- {n}" for n in notes] + \
        ([""] if notes else [])
    lines += ["| sign | " + " | ".join(m if q is None else f"{m} {q}x" for m, q in columns)
              + " |", "|---|" + "---:|" * len(columns)]
    for g in groups:
        vals = [cell.get((m, q, g)) for m, q in columns]
        lines.append(f"| {g} | " + " | ".join(
            "-" if v is None else
            f"{v['correct']} / {v['n']} ({100 * v['correct'] / v['n']:.0f} %)" for v in vals)
            + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[Path]:
    p = report_parser("training.reading_probe", __doc__, "reading_stills")
    p.add_argument("--n", type=int, default=200, help="stills")
    p.add_argument("--ratios", type=int_list, default=(2, 16))
    p.add_argument("--methods", type=str_list, default=("vst", "full"))
    p.add_argument("--number-prob", type=float, default=0.5,
                   help="share of signs that show a number")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    device = None if args.device == "auto" else args.device
    digest = model_digest(args.model)  # of the file as loaded, before a long run
    model, tokenizer, preprocess = load_model_folder(args.model, args.tokenizer, device)
    records = reading_probe(model, tokenizer, n=args.n, ratios=args.ratios,
                            methods=args.methods, number_prob=args.number_prob,
                            seed=args.seed, preprocess=preprocess)
    rows = summary_rows(records)
    settings = {"model": str(args.model), "model_tensors_sha256": digest,
                "n": args.n, "ratios": list(args.ratios),
                "methods": list(args.methods), "number_prob": args.number_prob,
                "seed": args.seed}
    notes = [f"model `{args.model}`{digest_note(settings)}; {args.n} held-out stills "
             "(split \"eval\"), one sign each, "
             f"{100 * args.number_prob:.0f} % numbers, seed {args.seed}; \"straddles\": the "
             "characters span two token columns"]
    return write_json_and_markdown(
        args.out, args.name, {"settings": settings, "rows": rows, "predictions": records},
        markdown_table(rows, notes) + markdown_misreads(misread_rows(records)))


__all__ = ["markdown_table", "reading_probe", "sign_cells", "summary_rows"]

if __name__ == "__main__":
    main()
