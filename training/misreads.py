"""How a sign was misread: the wrong answers to needle questions, sorted by what went wrong.

"Numbers 28 / 35" says how often a number is missed, not why. The remedies differ: a number
whose digits all came back in the wrong order (344 -> "434") was read but lost its order in
compression, which the reading loss is about; one digit off (985 -> "995") is a glyph misread
by the tower; another sign word for a word, or a number that is none of these, means the sign
was not kept at all. Evaluations (`training.niah`, `training.evaluate`) add this table to their
reports, and ``python -m training.misreads FILE.json ...`` prints it for results already made.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from training.world.answers import normalize_answer
from training.world.scene import SIGN_WORDS

__all__ = ["MISREADS", "misread", "misread_rows", "markdown_misreads"]

# Every kind `misread` returns, numbers first, in the order reports list them.
MISREADS: tuple[str, ...] = (
    "digits out of order", "one digit wrong", "a digit missing or extra", "another number",
    "no number", "another sign word", "not a sign word",
)

_SIGN_WORDS = frozenset(w.lower() for w in SIGN_WORDS)  # answers are compared normalised


def _is_subsequence(short: str, long: str) -> bool:
    rest = iter(long)
    return all(ch in rest for ch in short)


def misread(answer: str, prediction: str) -> str:
    """What kind of wrong answer ``prediction`` is to a sign reading ``answer``.

    Assumes the answer was judged wrong. A number's digits are the prediction's first run of
    digits (answers are short: "434", "the sign said 434").

    Example:
        >>> misread("344", "434"), misread("985", "995"), misread("774", "74")
        ('digits out of order', 'one digit wrong', 'a digit missing or extra')
        >>> misread("cat", "jar"), misread("cat", "a red circle"), misread("421", "a cat")
        ('another sign word', 'not a sign word', 'no number')
    """
    truth = normalize_answer(answer)
    said = normalize_answer(prediction)
    if truth.isdigit():
        digits = re.search(r"\d+", said)
        if digits is None:
            return "no number"
        got = digits.group()
        if got != truth and sorted(got) == sorted(truth):
            return "digits out of order"
        if len(got) == len(truth) and sum(a != b for a, b in zip(got, truth, strict=True)) == 1:
            return "one digit wrong"
        if abs(len(got) - len(truth)) == 1 and (
                _is_subsequence(got, truth) or _is_subsequence(truth, got)):
            return "a digit missing or extra"
        return "another number"
    words = said.split()
    return "another sign word" if words and words[0] in _SIGN_WORDS else "not a sign word"


def misread_rows(predictions: Iterable[Mapping[str, Any]], task: str | None = "needle"
                 ) -> list[dict[str, Any]]:
    """Wrong answers counted per method, ratio, sign kind and `misread` kind.

    Args:
        predictions: evaluation rows (``method``, ``ratio``, ``answer``, ``prediction``,
            ``correct``; ``task`` where the evaluation has several).
        task: only rows of this task; rows without a task (a haystack's) always count.

    Returns:
        ``{"method", "ratio", "sign", "kind", "n"}`` rows; ``sign`` is "number" or "word".
    """
    counts: Counter = Counter()
    for p in predictions:
        if p["correct"] or (task is not None and p.get("task", task) != task):
            continue
        sign = "number" if normalize_answer(str(p["answer"])).isdigit() else "word"
        counts[(p["method"], p["ratio"], sign,
                misread(str(p["answer"]), str(p["prediction"])))] += 1
    return [{"method": m, "ratio": r, "sign": s, "kind": k, "n": n}
            for (m, r, s, k), n in counts.items()]


def markdown_misreads(rows: Sequence[Mapping[str, Any]]) -> str:
    """The misread rows as one table: a line per method and ratio, a column per kind."""
    if not rows:
        return ""
    kinds = [k for k in MISREADS if any(r["kind"] == k for r in rows)]
    keys = list(dict.fromkeys((r["method"], r["ratio"]) for r in rows))
    n = Counter()
    for r in rows:
        n[(r["method"], r["ratio"], r["kind"])] += r["n"]
    lines = ["## wrong sign readings, by what went wrong", "",
             "| method | wrong | " + " | ".join(kinds) + " |", "|---|---:|" + "---:|" * len(kinds)]
    for method, ratio in keys:
        label = method + (f" {ratio}x" if ratio else "")
        wrong = sum(n[(method, ratio, k)] for k in kinds)
        lines.append(f"| {label} | {wrong} | "
                     + " | ".join(str(n[(method, ratio, k)]) for k in kinds) + " |")
    return "\n".join(lines + [""]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", type=Path,
                        help="evaluation JSONs (training.niah or training.evaluate)")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for path in args.reports:
        try:
            predictions = json.loads(path.read_text())["predictions"]
        except (OSError, ValueError, KeyError) as e:
            parser.error(f"{path}: {type(e).__name__}: {e}")
        rows += misread_rows(predictions)
    merged: Counter = Counter()
    for r in rows:
        merged[(r["method"], r["ratio"], r["sign"], r["kind"])] += r["n"]
    print(markdown_misreads([{"method": m, "ratio": ra, "sign": s, "kind": k, "n": c}
                             for (m, ra, s, k), c in merged.items()]), end="")


if __name__ == "__main__":
    main()
