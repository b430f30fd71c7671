"""Which model to ship? Several models' evaluations, pooled over samples and paired per question.

One evaluation sample (90 videos, one seed) moves a model's accuracy by a few points, which is
the size of the differences between consecutive models; deciding on one sample picks noise. This
pools every sample a model was scored on (`training.evaluate` or `training.niah` JSON) and pairs
questions across models: two models' answers to the same question are compared, and a question
counts only where every model answered it (same evaluation settings, video, question)::

    python -m training.compare_models \\
        --model eighth=run8/a16_seed1.json,run8/a16_seed2.json \\
        --model seventh=run7/a16_seed1.json,run7/a16_seed2.json --markdown choice.md

The first model is the reference: each other model's accuracy with each method is set against
it (paired bootstrap interval, `training.significance`), and every model's lead over average
pooling is given the same way.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from training.significance import paired_differences

__all__ = ["load_answers", "compare", "markdown_table"]

# Settings that name the model, not the questions: left out of the question's identity.
_MODEL_SETTINGS = ("model", "model_tensors_sha256")

# (evaluation settings, video, ratio, method, question, occurrence) -> correct
Answers = dict[tuple, bool]


def load_answers(paths: Sequence[Path], ratio: int = 16) -> Answers:
    """One model's answers from its evaluation files, keyed so that other models' match.

    Only answers at ``ratio`` are kept, and those of methods that do not compress (``full``,
    recorded without a ratio).

    Raises:
        ValueError: a file without predictions, or two files holding the same questions
            (one sample counted twice would narrow the intervals falsely).
    """
    answers: Answers = {}
    for path in paths:
        report = json.loads(Path(path).read_text())
        if not report.get("predictions"):
            raise ValueError(f"{path}: no predictions (an evaluation JSON of training.evaluate "
                             "or training.niah is expected)")
        settings = {k: v for k, v in report.get("settings", {}).items()
                    if k not in _MODEL_SETTINGS}
        sample = json.dumps(settings, sort_keys=True)
        seen: Counter = Counter()
        for p in report["predictions"]:
            if p["ratio"] not in (ratio, None):
                continue
            question = (p["video"], p["ratio"], p["method"], p.get("question", ""))
            seen[question] += 1  # the same text asked twice about one video stays two questions
            key = (sample, *question, seen[question])
            if key in answers:
                raise ValueError(f"{path}: repeats questions of an earlier file (the same "
                                 "sample given twice)")
            answers[key] = bool(p["correct"])
    return answers


def _rows(answers: Answers, keys: Sequence[tuple], label: str | None = None
          ) -> list[dict[str, Any]]:
    """significance rows: the question identity becomes the row's video; the method is
    ``label`` (a model's name) or, without one, the evaluation's method."""
    # one ratio per comparison (load_answers), so uncompressed answers share the compressed ones'
    return [{"video": repr(key[:2] + key[4:]), "ratio": 0, "question": "",
             "method": label or key[3], "correct": answers[key]} for key in keys]


def compare(models: Mapping[str, Answers], baseline: str = "avg_pool",
            resamples: int = 2000) -> dict[str, Any]:
    """Accuracy per model and method over the questions every model answered, with intervals.

    Returns:
        ``n`` (shared questions per method), ``accuracy`` (model -> method -> fraction),
        ``lead`` (model -> vst minus ``baseline``: diff, low, high) and ``versus`` (each
        model after the first -> method -> the first model minus it: diff, low, high).

    Raises:
        ValueError: no models, or the models share no question.
    """
    if not models:
        raise ValueError("no models to compare")
    names = list(models)
    shared = set.intersection(*(set(a) for a in models.values()))
    if not shared:
        raise ValueError("the models answered no question in common (different samples?)")
    # the first model's file order: the bootstrap resamples questions by position, so one
    # sample at one ratio gets the very interval its evaluation wrote
    keys = [k for k in models[names[0]] if k in shared]
    methods = sorted({k[3] for k in keys})
    n = {m: sum(k[3] == m for k in keys) for m in methods}
    accuracy = {name: {m: sum(models[name][k] for k in keys if k[3] == m) / n[m]
                       for m in methods} for name in names}
    lead = {}
    for name in names:
        if {"vst", baseline} <= set(methods):
            picked = [k for k in keys if k[3] in ("vst", baseline)]
            for row in paired_differences(_rows(models[name], picked),
                                          "vst", resamples):
                if row["method"] == baseline:
                    lead[name] = {x: row[x] for x in ("diff", "low", "high", "n")}
    versus: dict[str, dict[str, dict[str, float]]] = {}
    reference = names[0]
    for name in names[1:]:
        versus[name] = {}
        for m in methods:
            picked = [k for k in keys if k[3] == m]
            rows = _rows(models[reference], picked, reference) + _rows(models[name], picked, name)
            (row,) = paired_differences(rows, reference, resamples)
            versus[name][m] = {x: row[x] for x in ("diff", "low", "high")}
    return {"n": n, "accuracy": accuracy, "lead": lead, "versus": versus,
            "reference": reference, "baseline": baseline}


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}"


def markdown_table(result: Mapping[str, Any]) -> str:
    """The comparison as one markdown table (percent; intervals are 95 %)."""
    methods = list(result["n"])
    ref, base = result["reference"], result["baseline"]
    head = ["model", *(f"{m} (n = {result['n'][m]})" for m in methods),
            f"vst - {base}", f"{ref} - model, vst"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name, acc in result["accuracy"].items():
        lead = result["lead"].get(name)
        lead_s = f"{_pct(lead['diff'])} ({_pct(lead['low'])} ... {_pct(lead['high'])})" \
            if lead else "-"
        vs = result["versus"].get(name, {}).get("vst")
        vs_s = f"{_pct(vs['diff'])} ({_pct(vs['low'])} ... {_pct(vs['high'])})" if vs else "-"
        lines.append("| " + " | ".join([name, *(f"{100 * acc[m]:.1f}" for m in methods),
                                         lead_s, vs_s]) + " |")
    return "\n".join(lines) + "\n"


def _model_arg(text: str) -> tuple[str, list[Path]]:
    name, sep, files = text.partition("=")
    if not sep or not name or not files:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE[,FILE...], got {text!r}")
    return name, [Path(f) for f in files.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=_model_arg, action="append", required=True,
                        help="NAME=FILE[,FILE...]: a model's evaluation JSONs; the first "
                             "model is the reference")
    parser.add_argument("--ratio", type=int, default=16, help="the compression compared")
    parser.add_argument("--baseline", default="avg_pool", help="the method vst's lead is over")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.model]
    if len(set(names)) != len(names):
        parser.error("model names must differ")
    try:
        result = compare({name: load_answers(files, args.ratio) for name, files in args.model},
                         args.baseline)
    except (OSError, ValueError, KeyError) as e:  # json.JSONDecodeError is a ValueError
        parser.error(f"{type(e).__name__}: {e}")
    table = markdown_table(result)
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
