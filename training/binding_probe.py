"""Does a model tell which object on a still a question names? Stills of 2-3 objects, asked
"what shape is the <colour> object?" and "what colour is the <shape>?".

Every question that names a thing -- its colour, its shape, whether it is there, how many of
it there are, which came first -- needs one skill before any memory: binding the named colour
or shape to the object that has it. On a still whose colours and shapes all differ, the two
attribute questions name exactly one object each, and a model that does not bind still names
one of the still's objects: right 1 / k of the time on k objects. The probe reports, per
question form, k and the asked object's (shape, colour) pairing (trained or held out,
`streamvxl.world.scene.HELD_OUT_COMBOS`; ``--pairings trained`` draws no held-out pairing on
any object of the still), the share of answers that name the right value
against that chance, and the share that name a value the still shows at all (a model that
names one of them but not the asked one sees the still and does not bind).

Run it (a few minutes on the CPU for 200 stills)::

    python -m training.binding_probe --model streamvxl/weights/streamvxl-tiny.safetensors \\
        --n 200 --ratios 16 --methods vst,full --pairings trained --out docs/results/default_model

It writes ``<out>/<name>.json`` (settings, rows, every answer) and ``<name>.md``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from streamvxl.model.videoxl import VideoXL
from streamvxl.preprocess import Preprocessor
from streamvxl.world import WorldConfig, render, sample_still
from streamvxl.world.scene import COLOURS, HELD_OUT_COMBOS, SHAPES, Episode
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
    write_json_and_markdown,
)

log = logging.getLogger(__name__)

BINDING_PROBE_SEED = 0xB1D
"""Mixed into the seed, so the stills differ from every training and evaluation draw."""

Form = Literal["shape_of_colour", "colour_of_shape"]
FORMS: dict[Form, str] = {
    "shape_of_colour": "What shape is the {colour} object?",
    "colour_of_shape": "What colour is the {shape}?",
}
"""The two directions, worded as the training's `training.samples.IMAGE_FORMS` first words
them (the wording is not what this probe measures)."""


Pairings = Literal["mixed", "trained"]
"""Which (shape, colour) pairings a probe's stills draw: "mixed" as the evaluation split does
(about half the objects in a held-out pairing), "trained" only pairings training draws (the
stills themselves are still new: drawn from the probe's own seed)."""


def distinct_still(rng: np.random.Generator, world: WorldConfig, k: int,
                   pairings: Pairings = "mixed") -> Episode:
    """A still of ``k`` objects whose colours and shapes all differ, so a colour or a shape
    names one object; its pairings drawn as ``pairings`` says."""
    split = "eval" if pairings == "mixed" else "train"
    while True:
        ep = sample_still(rng, world, split, num_objects=k, sign=False)
        if (len(ep.objects) == k and len({o.colour for o in ep.objects}) == k
                and len({o.shape for o in ep.objects}) == k):
            return ep


def named_values(text: str, values: Sequence[str]) -> set[str]:
    """Which of ``values`` (colour or shape names) ``text`` names, as whole words (plurals
    too).

    Example:
        >>> sorted(named_values("A red circle.", ("red", "circle", "ring")))
        ['circle', 'red']
        >>> named_values("crosses", ("cross",)), named_values("string", ("ring",))
        ({'cross'}, set())
    """
    words = set(re.findall(r"[a-z]+", text.lower()))
    return {v for v in values if v in words or f"{v}s" in words or f"{v}es" in words}


def binding_probe(model: VideoXL | str | Path, tokenizer: Any = None, *, n: int = 200,
                  ratios: Sequence[int] = (16,), methods: Sequence[Method] = ("vst", "full"),
                  seed: int = 0, pairings: Pairings = "mixed", max_new_tokens: int = 4,
                  preprocess: Preprocessor | None = None, device: str | None = None
                  ) -> list[dict[str, Any]]:
    """One record per (still, form, method, ratio): ``{"still", "k", "form", "pairing",
    "question", "answer", "shown", "method", "ratio", "prediction", "right", "names_still"}``
    (``shown``: the values of the asked part the still holds, sorted). Each
    still (k = 2 or 3 in turn) asks both forms about one of its objects, drawn at random;
    ``full`` (every raw token) answers once per question, with ratio None. A pure function of
    its arguments."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if pairings not in get_args(Pairings):
        raise ValueError(f"pairings must be one of {get_args(Pairings)}, got {pairings!r}")
    answer_with = answering(model, tokenizer, methods, preprocess=preprocess, device=device,
                            prompt=None, boundary=None, window=None,
                            max_new_tokens=max_new_tokens)
    runtime, settings, decoding = answer_with
    world = WorldConfig(num_frames=1, height=runtime.model.image_size,
                        width=runtime.model.image_size, max_objects=3)
    rng = np.random.default_rng([BINDING_PROBE_SEED, seed])
    records: list[dict[str, Any]] = []
    for i in range(n):
        k = 2 + i % 2
        ep = distinct_still(rng, world, k, pairings)
        target = ep.objects[int(rng.integers(k))]
        video = encode_video(runtime, [render(ep)], settings.boundary, world.fps,
                             name=f"still-{i}")
        pairing = "held_out" if target.combo in HELD_OUT_COMBOS else "trained"
        for form, template in FORMS.items():
            asks_shape = form == "shape_of_colour"
            question = template.format(colour=target.colour, shape=target.shape)
            values = SHAPES if asks_shape else tuple(COLOURS)
            answer = target.shape if asks_shape else target.colour
            shown = {o.shape if asks_shape else o.colour for o in ep.objects}
            q_ids = question_ids(answer_with, question)
            for method in methods:
                for ratio in (None,) if method == "full" else ratios:
                    memory = build_memory(runtime, settings, video, method, ratio)
                    text = answer_question(memory, question, q_ids, decoding)
                    said = named_values(text, values)
                    records.append({
                        "still": i, "k": k, "form": form, "pairing": pairing,
                        "question": question, "answer": answer, "shown": sorted(shown),
                        "method": method,
                        "ratio": ratio, "prediction": text, "right": said == {answer},
                        "names_still": bool(said) and said <= shown})
        if (i + 1) % 50 == 0 or i + 1 == n:
            log.info("%d/%d stills", i + 1, n)
    return records


def summary_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, ratio, form, k, pairing -- and "all" pairings): questions, right answers,
    answers naming one of the still's values, and the chance 1 / k of naming the right one
    among them."""
    tally: dict[tuple[str, Any, str, int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        for how in ("all", r["pairing"]):
            cell = tally[(r["method"], r["ratio"], r["form"], r["k"], how)]
            cell[0] += 1
            cell[1] += r["right"]
            cell[2] += r["names_still"]
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in records))}
    return [{"method": m, "ratio": q, "form": f, "k": k, "pairing": p, "n": c[0],
             "right": c[1], "names_still": c[2], "chance": 1 / k}
            for (m, q, f, k, p), c in sorted(tally.items(), key=lambda kv: (
                order[kv[0][0]], kv[0][1] or 0, kv[0][2], kv[0][3], kv[0][4]))]


def markdown_table(rows: Sequence[dict[str, Any]], notes: Sequence[str] = ()) -> str:
    """A row per (method, ratio, form, k); right / asked per pairing, the chance and the share
    of answers naming a value the still shows."""
    by = {(r["method"], r["ratio"], r["form"], r["k"], r["pairing"]): r for r in rows}
    lines = ["# Binding on one still: the named object's other part, right / asked", ""]
    lines += [f"- {n}" for n in notes]
    lines += ["", "| method | ratio | question | objects | all | trained pairing | held-out "
              "pairing | chance | names one of the still's |", "|---|---:|---|---:|"
              + "---:|" * 5]
    for m, q, f, k in dict.fromkeys((r["method"], r["ratio"], r["form"], r["k"]) for r in rows):
        cells = [by.get((m, q, f, k, p)) for p in ("all", "trained", "held_out")]
        whole = cells[0]
        lines.append(
            f"| {m} | {'-' if q is None else f'{q}x'} | {f} | {k} | "
            + " | ".join("-" if c is None else
                         f"{c['right']} / {c['n']} ({100 * c['right'] / c['n']:.0f} %)"
                         for c in cells)
            + f" | {100 / k:.0f} % | {100 * whole['names_still'] / whole['n']:.0f} % |")
    return "\n".join(lines + [""]) + "\n"


def main(argv: list[str] | None = None) -> list[Path]:
    p = report_parser("training.binding_probe", __doc__, "binding_stills")
    p.add_argument("--n", type=int, default=200, help="held-out stills (half of 2 objects, "
                   "half of 3)")
    p.add_argument("--ratios", type=int_list, default=(16,), help="e.g. 2,16")
    p.add_argument("--methods", type=str_list, default=("vst", "full"), help="e.g. vst,full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pairings", default="mixed", choices=get_args(Pairings),
                   help="mixed: about half the objects in held-out (shape, colour) pairings; "
                   "trained: none")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    device = None if args.device == "auto" else args.device
    digest = model_digest(args.model)
    model, tokenizer, preprocess = load_model_folder(args.model, args.tokenizer, device)
    records = binding_probe(model, tokenizer, n=args.n, ratios=args.ratios,
                            methods=args.methods, seed=args.seed, pairings=args.pairings,
                            preprocess=preprocess)
    rows = summary_rows(records)
    settings = {"model": str(args.model), "model_tensors_sha256": digest, "n": args.n,
                "ratios": list(args.ratios), "methods": list(args.methods), "seed": args.seed,
                "pairings": args.pairings}
    notes = [f"model `{args.model}`{digest_note(settings)}; {args.n} new stills (seed "
             f"{args.seed}, {args.pairings} pairings), colours and shapes all different on "
             "each, both questions about one object; greedy answers"]
    return write_json_and_markdown(args.out, args.name, {"settings": settings, "rows": rows,
                                                         "records": records},
                                   markdown_table(rows, notes))


__all__ = ["binding_probe", "distinct_still", "markdown_table", "named_values", "summary_rows"]


if __name__ == "__main__":
    main()
