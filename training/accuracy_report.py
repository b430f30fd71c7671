"""Accuracy reports of `training.evaluate`'s rows and predictions: a table per task (method x
ratio), per question form, per wording (training vs held-out phrasings), per (shape, colour)
pairing, per naming, per frame size, paired differences, memory tokens, and a plot.

`write_report` writes all of them for one evaluation: ``<name>.json`` (settings, rows, paired
differences, every prediction), ``<name>.md`` and, when matplotlib is installed, ``<name>.png``.
The row and prediction dicts are `training.evaluate.evaluate`'s.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from streamvxl.world.answers import denies
from streamvxl.world.questions import EXIST_YES_NO_FORMS
from training.misreads import markdown_misreads, misread_rows
from training.significance import paired_differences

log = logging.getLogger("training.accuracy_report")

ALL = "all"
"""The task name of the rows over every question."""



def _methods_ratios(rows: list[dict[str, Any]]) -> tuple[list[str], list[int]]:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    ratios = sorted({r["ratio"] for r in rows})
    return methods, ratios


def _tally(predictions: Sequence[dict[str, Any]],
           groups: Callable[[dict[str, Any]], Iterable[tuple]]) -> list[dict[str, Any]]:
    """Correct / asked per (method, ratio, *group) for every group ``groups(p)`` puts a
    prediction in: one ``{"method", "ratio", "key", "n", "correct", "accuracy"}`` per cell. A
    method answered once for every ratio (``full``, ratio None) counts at each ratio, as in
    `evaluate`'s rows."""
    ratios = sorted({p["ratio"] for p in predictions if p["ratio"] is not None})
    tally: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for p in predictions:
        for r in ratios if p["ratio"] is None else (p["ratio"],):
            for group in groups(p):
                cell = tally[(p["method"], r, *group)]
                cell[0] += bool(p["correct"])
                cell[1] += 1
    return [{"method": m, "ratio": r, "key": key, "n": n, "correct": c, "accuracy": c / n}
            for (m, r, *key), (c, n) in tally.items()]


def _named(cells: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    """`_tally`'s cells with their group key spelled out as ``names`` (one per key part)."""
    return [{"method": c["method"], "ratio": c["ratio"],
             **dict(zip(names, c["key"], strict=True)),
             "n": c["n"], "correct": c["correct"], "accuracy": c["accuracy"]} for c in cells]


def form_rows(predictions: Sequence[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """Accuracy of one task split by question form (e.g. the needle's ``needle_word`` and
    ``needle_number``) from `evaluate`'s predictions: one ``{"method", "ratio", "task",
    "form", "n", "correct", "accuracy"}`` per cell (``full`` at each ratio, as in the rows)."""
    cells = _tally(predictions, lambda p: [(p["form"],)] if p["task"] == task else [])
    return [{"method": c["method"], "ratio": c["ratio"], "task": task, "form": c["key"][0],
             "n": c["n"], "correct": c["correct"], "accuracy": c["accuracy"]} for c in cells]


def phrasing_rows(predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy by task (and ``all``) split by wording: the training phrasings against the
    held-out ones (whichever the evaluation drew: held-out templates or a held-out grammar), from
    `evaluate`'s predictions: one ``{"method", "ratio", "task", "novel", "n", "correct",
    "accuracy"}`` per cell. A gap between the two is what the model learned of the wording
    rather than of the video. ``full`` (ratio None) counts at each ratio, as in the rows."""
    return _named(_tally(predictions, lambda p: [(t, bool(p.get("novel_phrasing")))
                                                 for t in (ALL, p["task"])]), "task", "novel")


def markdown_phrasing(cells: Sequence[dict[str, Any]]) -> str:
    """`phrasing_rows` as a table: a row per method and task, a column per ratio holding
    training / held-out wording accuracy and the held-out count; empty without both."""
    by = {(c["method"], c["ratio"], c["task"], c["novel"]): c for c in cells}
    ratios = sorted({c["ratio"] for c in cells})
    if not any(c["novel"] for c in cells) or not any(not c["novel"] for c in cells):
        return ""
    tasks = [ALL] + [t for t in dict.fromkeys(c["task"] for c in cells) if t != ALL]
    lines = ["## by wording: training phrasings / held-out phrasings, accuracy % (held-out n)",
             "", "| method | task | " + " | ".join(f"{r}x" for r in ratios) + " |",
             "|---|---|" + "---:|" * len(ratios)]
    for m in dict.fromkeys(c["method"] for c in cells):
        for task in tasks:
            vals = []
            for r in ratios:
                seen, new = by.get((m, r, task, False)), by.get((m, r, task, True))
                vals.append("-" if seen is None or new is None else
                            f"{100 * seen['accuracy']:.1f} / {100 * new['accuracy']:.1f} "
                            f"(n={new['n']})")
            lines.append(f"| {m} | {task} | " + " | ".join(vals) + " |")
    return "\n".join(lines + [""]) + "\n"


def pairing_rows(predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy by question form (and ``all``) split by the (shape, colour) pairing of the
    objects asked about (`streamvxl.world.questions.pairing`: "trained" or "held_out";
    questions about no object left out), from `evaluate`'s predictions: one ``{"method",
    "ratio", "form", "pairing", "n", "correct", "accuracy", "denied"}`` per cell. A model that
    composes shape and colour answers both alike; one that memorised pairings does not.
    ``denied`` counts the wrong answers that deny the object ("none", "no" where it is there:
    `streamvxl.world.answers.denies`) -- a model that does not recognise a held-out pairing's
    object says it was not there rather than naming a wrong colour."""
    def groups(p: dict[str, Any]) -> list[tuple]:
        return [(f, p["pairing"]) for f in (ALL, p["form"])] if p.get("pairing") else []

    cells = _named(_tally(predictions, groups), "form", "pairing")
    wrong_denials = [{**p, "correct": not p["correct"] and denies(p.get("prediction", ""))}
                     for p in predictions]
    denied = {(c["method"], c["ratio"], c["form"], c["pairing"]): c["correct"]
              for c in _named(_tally(wrong_denials, groups), "form", "pairing")}
    return [{**c, "denied": denied[(c["method"], c["ratio"], c["form"], c["pairing"])]}
            for c in cells]


def markdown_pairing(cells: Sequence[dict[str, Any]]) -> str:
    """`pairing_rows` as a table: a row per method and form, a column per ratio holding
    trained / held-out pairing accuracy, both counts and both counts of wrong answers that
    deny the object; empty without both kinds."""
    by = {(c["method"], c["ratio"], c["form"], c["pairing"]): c for c in cells}
    if {c["pairing"] for c in cells} != {"trained", "held_out"}:
        return ""
    ratios = sorted({c["ratio"] for c in cells})
    forms = [ALL] + [f for f in dict.fromkeys(c["form"] for c in cells) if f != ALL]
    lines = ["## by (shape, colour) pairing: trained / held-out pairings, accuracy % "
             "(n trained / held-out; wrong answers that deny the object, trained / held-out)",
             "",
             "| method | form | " + " | ".join(f"{r}x" for r in ratios) + " |",
             "|---|---|" + "---:|" * len(ratios)]
    for m in dict.fromkeys(c["method"] for c in cells):
        for form in forms:
            vals = []
            for r in ratios:
                seen, new = by.get((m, r, form, "trained")), by.get((m, r, form, "held_out"))
                vals.append("-" if seen is None or new is None else
                            f"{100 * seen['accuracy']:.1f} / {100 * new['accuracy']:.1f} "
                            f"({seen['n']} / {new['n']}; {seen['denied']} / {new['denied']})")
            if any(v != "-" for v in vals):
                lines.append(f"| {m} | {form} | " + " | ".join(vals) + " |")
    return "\n".join(lines + [""]) + "\n"


def naming_rows(predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Existence accuracy by form (the answer: ``exists_present`` "yes", ``exists_absent``
    "no") split by how the question names the thing (`streamvxl.world.questions.naming`:
    "both", "shape" or "colour"), from `evaluate`'s predictions: one ``{"method", "ratio",
    "form", "naming", "n", "correct", "accuracy"}`` per cell. A model that answers from the
    wording is right on one form and wrong on the other within a naming."""
    return _named(_tally(predictions, lambda p: [(p["form"], p["naming"])]
                         if p.get("naming") else []), "form", "naming")


def markdown_naming(cells: Sequence[dict[str, Any]]) -> str:
    """`naming_rows` as a table: a row per method, ratio and form, a column per naming
    holding accuracy % (n); empty without existence questions."""
    if not cells:
        return ""
    return _split_table(cells, "existence by naming (colour and shape / shape / colour)",
                        "form", EXIST_YES_NO_FORMS,
                        "naming", ("both", "shape", "colour"))


def _split_table(cells: Sequence[dict[str, Any]], title: str, row_key: str,
                 row_values: Sequence[str], column_key: str, columns: Sequence[str]) -> str:
    """A row per method, ratio and ``row_key`` value (those with any cell), a column per
    ``column_key`` value, each cell accuracy % (n): the layout of the naming and frame-size
    splits."""
    by = {(c["method"], c["ratio"], c[row_key], c[column_key]): c for c in cells}
    lines = [f"## {title}: accuracy % (n)", "",
             f"| method | ratio | {row_key} | " + " | ".join(columns) + " |",
             "|---|---:|---|" + "---:|" * len(columns)]
    for m in dict.fromkeys(c["method"] for c in cells):
        for r in sorted({c["ratio"] for c in cells}):
            for row in row_values:
                vals = [by.get((m, r, row, k)) for k in columns]
                if any(vals):
                    lines.append(f"| {m} | {r}x | {row} | " + " | ".join(
                        "-" if c is None else f"{100 * c['accuracy']:.1f} ({c['n']})"
                        for c in vals) + " |")
    return "\n".join(lines + [""]) + "\n"


def frame_size_rows(predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy by task (and ``all``) split by the videos' frame size (height x width, from a
    world that draws ``sizes``), from `evaluate`'s predictions: one ``{"method", "ratio",
    "task", "frame_size", "n", "correct", "accuracy"}`` per cell. A model that sees only its
    training size, or a preprocessing that crops a wide frame's sides, shows here."""
    return _named(_tally(predictions, lambda p: [(t, p["frame_size"]) for t in (ALL, p["task"])]
                         if p.get("frame_size") else []), "task", "frame_size")


def markdown_frame_sizes(cells: Sequence[dict[str, Any]]) -> str:
    """`frame_size_rows` as a table: a row per method, ratio and task, a column per frame
    size holding accuracy % (n); empty with one size."""
    sizes = sorted({c["frame_size"] for c in cells},
                   key=lambda k: tuple(int(v) for v in k.split("x")))
    if len(sizes) < 2:
        return ""
    tasks = [ALL] + [t for t in dict.fromkeys(c["task"] for c in cells) if t != ALL]
    return _split_table(cells, "by frame size (height x width)", "task", tasks, "frame_size",
                        sizes)


def markdown_report(rows: list[dict[str, Any]], title: str = "Accuracy vs compression ratio",
                    notes: Sequence[str] = (), differences: Sequence[dict[str, Any]] = (),
                    forms: Sequence[dict[str, Any]] = ()) -> str:
    """One table per task (``all`` first): methods x ratios, accuracy in percent; a task's
    split by question form (`form_rows`) when given; the paired differences
    (`training.significance.paired_differences`) when given; then the mean memory tokens per
    video of each method and ratio."""
    methods, ratios = _methods_ratios(rows)
    tasks = [ALL] + [t for t in dict.fromkeys(r["task"] for r in rows) if t != ALL]
    cell = {(r["method"], r["ratio"], r["task"]): r for r in rows}
    head = "| method | " + " | ".join(f"{r}x" for r in ratios) + " |"
    rule = "|---|" + "---:|" * len(ratios)
    lines = [f"# {title}", ""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    for task in tasks:
        ns = sorted({r["n"] for r in rows if r["task"] == task})
        lines += [f"## {task}: accuracy % (n = {', '.join(map(str, ns))} per cell)", "",
                  head, rule]
        for m in methods:
            vals = [cell.get((m, r, task)) for r in ratios]
            lines.append(f"| {m} | " + " | ".join(
                "-" if v is None else f"{100 * v['accuracy']:.1f}" for v in vals) + " |")
        lines.append("")
    for task in dict.fromkeys(f["task"] for f in forms):
        of_task = [f for f in forms if f["task"] == task]
        task_forms = list(dict.fromkeys(f["form"] for f in of_task))
        by = {(f["method"], f["ratio"], f["form"]): f for f in of_task}
        lines += [f"## {task} by question form: accuracy % (n per cell)", "", head, rule]
        for m in methods:
            for form in task_forms:
                vals = [by.get((m, r, form)) for r in ratios]
                if any(vals):
                    lines.append(f"| {m} {form} | " + " | ".join(
                        "-" if v is None else f"{100 * v['accuracy']:.1f} (n={v['n']})"
                        for v in vals) + " |")
        lines.append("")
    if differences:
        ref = differences[0]["reference"]
        diff = {(d["method"], d["ratio"]): d for d in differences}
        lines += [f"## {ref} minus each method: accuracy points on the same questions, with a "
                  "paired bootstrap 95 % interval", "", head, rule]
        for m in dict.fromkeys(d["method"] for d in differences):
            vals = [diff.get((m, r)) for r in ratios]
            lines.append(f"| {m} | " + " | ".join(
                "-" if v is None else f"{100 * v['diff']:+.1f} ({100 * v['low']:+.1f} ... "
                f"{100 * v['high']:+.1f})" for v in vals) + " |")
        lines.append("")
    lines += ["## memory tokens per video (mean, sink excluded)", "", head, rule]
    for m in methods:
        vals = [cell.get((m, r, ALL)) for r in ratios]
        lines.append(f"| {m} | " + " | ".join(
            "-" if v is None else f"{v['memory_tokens']:.0f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy(rows: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Accuracy vs ratio, one line per method, one panel per task (``all`` first). Returns
    the PNG's path, or None (with a warning) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot written (the JSON and markdown "
                    "tables have the same numbers)")
        return None
    methods, ratios = _methods_ratios(rows)
    tasks = [ALL] + [t for t in dict.fromkeys(r["task"] for r in rows) if t != ALL]
    cols = min(3, len(tasks))
    nrows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for m in methods:
            pts = sorted((r["ratio"], r["accuracy"]) for r in rows
                         if r["method"] == m and r["task"] == task)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=m,
                        linestyle="--" if m == "full" else "-")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ratios, [f"{r}x" for r in ratios])
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(task)
        ax.set_xlabel("compression ratio")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    axes.flat[0].legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(rows: list[dict[str, Any]], out: str | Path, name: str,
                 settings: dict[str, Any], predictions: list[dict[str, Any]] | None = None,
                 notes: Sequence[str] = ()) -> list[Path]:
    """``<out>/<name>.json``, ``.md`` and (when matplotlib is there) ``.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    methods = {p["method"] for p in predictions or ()}
    differences = paired_differences(predictions or []) if "vst" in methods and \
        len(methods) > 1 else []
    js = out / f"{name}.json"
    js.write_text(json.dumps({"settings": settings, "rows": rows, "differences": differences,
                              "predictions": predictions or []}, indent=1))
    md = out / f"{name}.md"
    # every task asked in more than one form, split by form: needles by sign kind (a word is
    # one of 32, a number needs its digits in order), yes / no questions by their answer
    asked: dict[str, set[str]] = defaultdict(set)
    for p in predictions or ():
        asked[p["task"]].add(p["form"])
    forms = [row for task, names in asked.items() if len(names) > 1
             for row in form_rows(predictions or [], task)]
    md.write_text(markdown_report(rows, notes=notes, differences=differences, forms=forms)
                  + markdown_phrasing(phrasing_rows(predictions or []))
                  + markdown_pairing(pairing_rows(predictions or []))
                  + markdown_naming(naming_rows(predictions or []))
                  + markdown_frame_sizes(frame_size_rows(predictions or []))
                  + markdown_misreads(misread_rows(predictions or [], task="needle")))
    written = [js, md]
    png = plot_accuracy(rows, out / f"{name}.png")
    if png is not None:
        written.append(png)
    log.info("wrote %s", ", ".join(map(str, written)))
    return written


__all__ = ["ALL", "form_rows", "frame_size_rows", "markdown_frame_sizes", "markdown_naming",
           "markdown_pairing", "markdown_phrasing", "markdown_report", "naming_rows",
           "pairing_rows", "phrasing_rows", "plot_accuracy", "write_report"]
