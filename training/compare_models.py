"""Which model to ship? Several models' evaluations, pooled over samples and paired per question.

One evaluation sample (90 videos, one seed) moves a model's accuracy by a few points, which is
the size of the differences between consecutive models; deciding on one sample picks noise. This
pools every sample a model was scored on (`training.evaluate` or `training.niah` JSON, or a
stills probe's: `training.binding_probe`, `existence_probe`, `reading_probe`) and pairs
questions across models: two models' answers to the same question are compared, and a question
counts only where every model answered it (same evaluation settings, video, question)::

    python -m training.compare_models \\
        --model candidate=cand/a16_seed1.json,cand/a16_seed2.json \\
        --model shipped=shipped/a16_seed1.json,shipped/a16_seed2.json --markdown choice.md

The first model is the reference: each other model's accuracy with each method is set against
it (paired bootstrap interval, `training.significance`), and every model's lead over average
pooling is given the same way. ``--by task`` or ``--by form`` adds the same pairing within each
task or question form (what a total hides: a model that gains "no" and loses "which came
first" can tie). Refused, with the reason: one model's files from different
tensors (by digest), a sample given twice, a ratio a file lacks, and models that answered the
same questions under different conditions (boundary detector, window, answer length).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from streamvxl.world import WorldConfig
from training.significance import paired_differences

__all__ = ["Answers", "Question", "load_answers", "compare", "compare_groups", "markdown_table",
           "group_table"]

log = logging.getLogger(__name__)

# Evaluation settings that say which model answered or what was computed, not which questions
# were asked: left out of a question's identity.
_NOT_THE_QUESTIONS = ("model", "model_tensors_sha256", "ratio", "ratios", "methods", "fit",
                      "frame_tokens")
# Settings that shape the answers (the memory's intervals, its window, the answer length, the
# last interval stored or read raw): not the questions either, but models compared on one
# sample must share them.
_CONDITIONS = ("boundary", "window", "max_new_tokens", "tail")
FRAME_TOKENS_BEFORE_RECORDED = 16
"""A frame's visual tokens in an evaluation that does not record them: every model evaluated
before ``frame_tokens`` was recorded had 16 (streamvxl-tiny's 2 x 2 pool)."""
_WORLD_DEFAULTS: dict[str, Any] = json.loads(json.dumps(asdict(WorldConfig())))
"""Today's world defaults as an evaluation JSON writes them: a field a file omits (recorded
before it existed) and one written at its default are the same world."""
_SETTINGS_DEFAULTS: dict[str, Any] = {"frames": 1}
"""Probe settings recorded after files without them, at the value those files used: a file
that omits existence_probe's ``frames`` asked stills (1), as one that writes 1 did."""
_MISSING = object()


class Question(NamedTuple):
    """One question of one evaluation sample, as every model that was asked it names it."""

    sample: str  # the settings that chose the questions (JSON)
    video: str
    ratio: int | None  # None: a method that does not compress (``full``)
    method: str
    text: str
    occurrence: int  # the same text asked twice about one video stays two questions


@dataclass
class Answers:
    """One model's answers: right or wrong per question, and each sample's conditions."""

    correct: dict[Question, bool] = field(default_factory=dict)
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)  # sample -> settings
    kinds: dict[Question, tuple[str, str]] = field(default_factory=dict)  # (task, form)


_EXPECTED = ("an evaluation JSON of training.evaluate or training.niah, or a stills probe's "
             "(binding_probe, existence_probe, reading_probe) is expected")


def _from_still(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stills probe's answer as an evaluation's prediction: the still is the video, the
    question its text (a reading probe asks none: the sign's text names it), right or wrong as
    ``right`` (binding_probe) or ``correct``."""
    return {"video": f"still {record['still']}", "ratio": record["ratio"],
            "method": record["method"],
            "question": record["question"] if "question" in record else record["text"],
            "correct": record["right"] if "right" in record else record["correct"]}


def _predictions(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    report = json.loads(Path(path).read_text())
    if not isinstance(report, dict):
        raise ValueError(f"{path}: no predictions ({_EXPECTED})")
    predictions = report.get("predictions", report.get("records"))
    if not isinstance(predictions, list) or not predictions:
        raise ValueError(f"{path}: no predictions ({_EXPECTED})")
    try:
        if all(isinstance(p, dict) and "still" in p and "video" not in p for p in predictions):
            predictions = [_from_still(p) for p in predictions]
    except KeyError as e:
        raise ValueError(f"{path}: a still's answer has no {e} ({_EXPECTED})") from None
    return report.get("settings", {}), predictions


def load_answers(paths: Sequence[Path], ratio: int = 16) -> Answers:
    """One model's answers from its evaluation files, keyed so that other models' match.

    Only answers at ``ratio`` are kept, and those of methods that do not compress (``full``,
    recorded without a ratio); a file may hold only the latter.

    Raises:
        ValueError: a file without predictions, one that compressed but not at ``ratio``, a
            prediction without its fields, files of different models (their tensors' digests
            differ), or two files holding the same questions (one sample counted twice would
            narrow the intervals falsely).
    """
    answers = Answers()
    digests: dict[str, Path] = {}
    for path in paths:
        settings, predictions = _predictions(path)
        if settings.get("model_tensors_sha256"):
            digests.setdefault(settings["model_tensors_sha256"], path)
        if len(digests) > 1:
            files = ", ".join(map(str, digests.values()))
            raise ValueError(f"files of different models given as one: {files} (their "
                             "tensors' digests differ)")
        chosen = {k: v for k, v in settings.items()
                  if k not in _NOT_THE_QUESTIONS + _CONDITIONS
                  and v != _SETTINGS_DEFAULTS.get(k, _MISSING)}
        if isinstance(chosen.get("world"), dict):  # a field added later is off when None
            chosen["world"] = {k: v for k, v in chosen["world"].items()  # or at its default
                               if v is not None and v != _WORLD_DEFAULTS.get(k, _MISSING)}
        sample = json.dumps(chosen, sort_keys=True)
        conditions = {k: settings.get(k) for k in _CONDITIONS}
        if conditions["window"] is not None:
            # compared in frames: a model of 64 tokens a frame reads 10 frames a window in 640
            # raw tokens, as one of 16 reads them in 160
            frame_tokens = settings.get("frame_tokens", FRAME_TOKENS_BEFORE_RECORDED)
            conditions["window"] = f"{conditions['window'] / frame_tokens:g} frames"
        answers.conditions[sample] = conditions
        seen: Counter[tuple] = Counter()
        at_ratio = 0
        for i, p in enumerate(predictions):
            try:
                if p["ratio"] not in (ratio, None):
                    continue
                at_ratio += p["ratio"] == ratio
                asked = (p["video"], p["ratio"], p["method"], p.get("question", ""))
                correct = bool(p["correct"])
            except (KeyError, TypeError) as e:
                raise ValueError(f"{path}: prediction {i} has no {e} ({_EXPECTED})") from None
            seen[asked] += 1
            question = Question(sample, *asked, seen[asked])
            if question in answers.correct:
                raise ValueError(f"{path}: repeats questions of an earlier file (the same "
                                 "sample given twice)")
            answers.correct[question] = correct
            # a stills probe records no task: its questions are one kind, named by its file
            task = str(p.get("task", Path(path).stem))
            answers.kinds[question] = (task, str(p.get("form", task)))
        ratios = sorted({p["ratio"] for p in predictions if p.get("ratio") is not None})
        if not at_ratio and ratios:  # a file of uncompressed answers only (a raw run's
            # probe) has no ratio to miss; one that compressed at others would be misread
            raise ValueError(f"{path}: no answers at {ratio}x (it has {ratios})")
    return answers


def _rows(answers: Answers, questions: Sequence[Question], label: str | None = None
          ) -> list[dict[str, Any]]:
    """`training.significance` rows: the sample and video become the row's video (what
    ``by_video`` resamples), the text and its occurrence its question; the method is ``label``
    (a model's name) or, without one, the evaluation's method."""
    # one ratio per comparison (load_answers), so uncompressed answers pair with compressed ones
    return [{"video": repr((q.sample, q.video)), "ratio": 0,
             "question": repr((q.text, q.occurrence)), "method": label or q.method,
             "correct": answers.correct[q]} for q in questions]


def _shared_questions(models: Mapping[str, Answers]) -> set[Question]:
    """The questions every model answered, once they are known to be comparable.

    Raises:
        ValueError: no models, no question in common, or a shared sample answered under
            different conditions.
    """
    if not models:
        raise ValueError("no models to compare")
    names = list(models)
    shared = set.intersection(*(set(a.correct) for a in models.values()))
    if not shared:
        raise ValueError("the models answered no question in common (different samples?)")
    for sample in {q.sample for q in shared}:
        first = models[names[0]].conditions[sample]
        for name in names[1:]:
            differ = [k for k, v in models[name].conditions[sample].items() if first[k] != v]
            if differ:
                raise ValueError(f"{names[0]} and {name} answered the same questions with "
                                 f"different {', '.join(differ)}: not a like-for-like comparison")
    return shared


def compare(models: Mapping[str, Answers], baseline: str = "avg_pool",
            resamples: int = 2000, by_video: bool = False) -> dict[str, Any]:
    """Accuracy per model and method over the questions every model answered, with intervals
    (questions resampled; whole videos with ``by_video``, `training.significance`).

    Returns:
        ``n`` (shared questions per method), ``accuracy`` (model -> method -> fraction),
        ``lead`` (model -> vst minus ``baseline`` over the questions both answered: diff, low,
        high, n) and ``versus`` (each model after the first -> method -> the first model
        minus it: diff, low, high).

    Example:
        >>> asked = [Question("seed 1", f"v{i}", 16, m, "What did the sign say?", 1)
        ...          for i in range(4) for m in ("vst", "avg_pool")]
        >>> one = Answers({q: q.method == "vst" for q in asked}, {"seed 1": {}})
        >>> two = Answers({q: q.video != "v0" for q in asked}, {"seed 1": {}})
        >>> result = compare({"one": one, "two": two}, resamples=100)
        >>> result["accuracy"]["two"], result["lead"]["one"]["diff"]
        ({'avg_pool': 0.75, 'vst': 0.75}, 1.0)
        >>> result["versus"]["two"]["vst"]["diff"]  # one minus two, vst
        0.25

    Raises:
        ValueError: no models, the models share no question, they answered a shared sample
            under different conditions (intervals, window, answer length), or ``baseline`` is
            "vst" or none of the methods (when vst is compared with other methods).
    """
    names = list(models)
    shared = _shared_questions(models)
    for name in names:  # said here only: `compare_groups` after it leaves out the same
        left_out = len(models[name].correct) - len(shared)
        if left_out:
            log.warning("%s: %d answers to questions not every model was asked are left out",
                        name, left_out)
    # the first model's file order: the bootstrap resamples questions by position, so a lone
    # single-ratio sample gets the very interval its evaluation wrote for avg_pool (the first
    # row `training.significance` draws; later rows follow from one generator in turn)
    questions = [q for q in models[names[0]].correct if q in shared]
    methods = sorted({q.method for q in questions})
    if "vst" in methods and (baseline == "vst" or (baseline not in methods
                                                   and set(methods) - {"vst"})):
        raise ValueError(f"baseline {baseline!r} must be one of the other methods: "
                         f"{', '.join(m for m in methods if m != 'vst')}")
    n = {m: sum(q.method == m for q in questions) for m in methods}
    accuracy = {name: {m: sum(models[name].correct[q] for q in questions if q.method == m) / n[m]
                       for m in methods} for name in names}
    lead = {}
    if "vst" in methods:
        picked = [q for q in questions if q.method in ("vst", baseline)]
        for name in names:
            for row in paired_differences(_rows(models[name], picked), "vst", resamples,
                                          by_video=by_video):
                if row["method"] == baseline:
                    lead[name] = {x: row[x] for x in ("diff", "low", "high", "n")}
    versus: dict[str, dict[str, dict[str, float]]] = {}
    reference = names[0]
    for name in names[1:]:
        versus[name] = {}
        for m in methods:
            picked = [q for q in questions if q.method == m]
            rows = _rows(models[reference], picked, reference) + _rows(models[name], picked, name)
            (row,) = paired_differences(rows, reference, resamples, by_video=by_video)
            versus[name][m] = {x: row[x] for x in ("diff", "low", "high")}
    return {"n": n, "accuracy": accuracy, "lead": lead, "versus": versus,
            "reference": reference, "baseline": baseline}


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}"


def markdown_table(result: Mapping[str, Any]) -> str:
    """The comparison as one markdown table (percent; intervals are 95 %)."""
    methods = list(result["n"])
    ref, base = result["reference"], result["baseline"]
    # the models set against each other with vst, or with the one method they share
    paired = "vst" if "vst" in methods or len(methods) != 1 else methods[0]
    head = ["model", *(f"{m} (n = {result['n'][m]})" for m in methods),
            f"vst - {base}", f"{ref} - model, {paired}"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name, acc in result["accuracy"].items():
        lead = result["lead"].get(name)
        lead_s = (f"{_pct(lead['diff'])} ({_pct(lead['low'])} ... {_pct(lead['high'])}; "
                  f"n = {lead['n']})") if lead else "-"
        vs = result["versus"].get(name, {}).get(paired)
        vs_s = f"{_pct(vs['diff'])} ({_pct(vs['low'])} ... {_pct(vs['high'])})" if vs else "-"
        lines.append("| " + " | ".join([name, *(f"{100 * acc[m]:.1f}" for m in methods),
                                         lead_s, vs_s]) + " |")
    return "\n".join(lines) + "\n"


GroupBy = Literal["task", "form"]


def compare_groups(models: Mapping[str, Answers], by: GroupBy, method: str = "vst",
                   resamples: int = 2000, by_video: bool = False) -> list[dict[str, Any]]:
    """`compare`'s pairing within each task (or each question form, "task/form") for one
    method: which kinds of question a total's difference comes from.

    Returns:
        One row per group, in order: ``group``, ``n`` (questions every model answered),
        ``correct`` (model -> count) and ``versus`` (each model after the first -> the first
        model's accuracy minus its: diff, low, high; 95 %).

    Example:
        >>> asked = [Question("seed 1", f"v{i}", 16, "vst", t, 1)
        ...          for i in range(4) for t in ("Was there a star?", "What came first?")]
        >>> kinds = {q: ("exist", "exists_absent") if "star" in q.text else ("order", "first")
        ...          for q in asked}
        >>> one = Answers({q: True for q in asked}, {"seed 1": {}}, kinds)
        >>> two = Answers({q: "star" in q.text for q in asked}, {"seed 1": {}}, kinds)
        >>> [(r["group"], r["correct"], r["versus"]["two"]["diff"])
        ...  for r in compare_groups({"one": one, "two": two}, "task", resamples=100)]
        [('exist', {'one': 4, 'two': 4}, 0.0), ('order', {'one': 4, 'two': 0}, 1.0)]

    Raises:
        ValueError: no models, no question in common, a shared sample answered under
            different conditions (as `compare`), or no shared answer of ``method``.
    """
    names = list(models)
    shared = _shared_questions(models)
    reference = models[names[0]]
    questions = [q for q in reference.correct if q in shared and q.method == method]
    if not questions:
        raise ValueError(f"the models share no answer of {method!r}")

    def group(q: Question) -> str:
        task, form = reference.kinds.get(q, ("", ""))
        return task if by == "task" else f"{task}/{form}"

    rows = []
    for name in sorted({group(q) for q in questions}):
        picked = [q for q in questions if group(q) == name]
        versus = {}
        for other in names[1:]:
            pair = (_rows(reference, picked, names[0])
                    + _rows(models[other], picked, other))
            (row,) = paired_differences(pair, names[0], resamples, by_video=by_video)
            versus[other] = {x: row[x] for x in ("diff", "low", "high")}
        rows.append({"group": name, "n": len(picked),
                     "correct": {m: sum(models[m].correct[q] for q in picked) for m in names},
                     "versus": versus})
    return rows


def group_table(rows: Sequence[Mapping[str, Any]], by: GroupBy, method: str = "vst") -> str:
    """`compare_groups`' rows as one markdown table: answers right of n per model, then the
    first model minus each other (percent; intervals 95 %)."""
    names = list(rows[0]["correct"])
    others = list(rows[0]["versus"])
    head = [by, "n", *(f"{m}, {method}" for m in names), *(f"{names[0]} - {m}" for m in others)]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for row in rows:
        vs = [f"{_pct(v['diff'])} ({_pct(v['low'])} ... {_pct(v['high'])})"
              for v in row["versus"].values()]
        lines.append("| " + " | ".join([row["group"], str(row["n"]),
                                         *(str(row["correct"][m]) for m in names), *vs]) + " |")
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
    parser.add_argument("--by-video", action="store_true",
                        help="resample whole videos, not questions (a video's questions may "
                             "move together)")
    parser.add_argument("--by", choices=("task", "form"),
                        help="also pair within each task or question form (vst)")
    parser.add_argument("--markdown", type=Path, help="also write the table(s) here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    names = [name for name, _ in args.model]
    if len(set(names)) != len(names):
        parser.error("model names must differ")
    try:
        models = {name: load_answers(files, args.ratio) for name, files in args.model}
        result = compare(models, args.baseline, by_video=args.by_video)
        groups = (compare_groups(models, args.by, by_video=args.by_video)
                  if args.by else None)
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        parser.error(f"{type(e).__name__}: {e}")
    table = markdown_table(result)
    if groups:
        table += "\n" + group_table(groups, args.by)
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
