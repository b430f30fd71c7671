"""How a sign was misread: the wrong answers to needle questions, sorted by what went wrong.

"Numbers 28 / 35" says how often a number is missed, not why. The remedies differ: a number
whose digits all came back in the wrong order (344 -> "434") was read but lost its order,
which the reading loss is about; one digit off (985 -> "995") is a glyph misread by the tower;
the right sign among other words or numbers is an answer-form slip; another sign word for a
word, or a number that is none of these, means the sign was not kept at all. The reports of
`training.evaluate`, `training.niah` and `training.reading_probe` end with this table, and
``python -m training.misreads FILE.json ...`` prints it for reports made before.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from streamvxl.world.answers import normalize_answer
from streamvxl.world.scene import SIGN_WORDS

__all__ = ["MISREADS", "misread", "misread_rows", "markdown_misreads"]

# Every kind `misread` returns, numbers first, in the order reports list them.
MISREADS: tuple[str, ...] = (
    "digits out of order", "one digit wrong", "a digit missing or extra", "another number",
    "no number", "the right sign, said otherwise", "another sign word", "not a sign word",
)

_SIGN_WORDS = frozenset(w.lower() for w in SIGN_WORDS)  # answers are compared normalised


def _is_subsequence(short: str, long: str) -> bool:
    rest = iter(long)
    return all(ch in rest for ch in short)


def _numbers(said: str) -> list[str]:
    """The digit runs of a normalised answer, leading zeros dropped; digits said one at a time
    ("3 4 4") are one number."""
    runs = re.findall(r"\d+", said)
    if len(runs) > 1 and all(len(r) == 1 for r in runs):
        runs = ["".join(runs)]
    return [r.lstrip("0") or "0" for r in runs]


def misread(answer: str, prediction: str) -> str:
    """What kind of wrong answer ``prediction`` is to a sign reading ``answer``.

    Assumes the answer was judged wrong. A number is compared with the prediction's first
    number, unless the right one is among them.

    Example:
        >>> misread("344", "434"), misread("985", "995"), misread("774", "74")
        ('digits out of order', 'one digit wrong', 'a digit missing or extra')
        >>> misread("342", "342, 234"), misread("cat", "the sign said dog")
        ('the right sign, said otherwise', 'another sign word')
        >>> misread("cat", "a red circle"), misread("421", "a cat")
        ('not a sign word', 'no number')
    """
    truth = normalize_answer(answer)
    said = normalize_answer(prediction)
    if truth.isdigit():
        truth = truth.lstrip("0") or "0"
        numbers = _numbers(said)
        if not numbers:
            return "no number"
        if truth in numbers:
            return "the right sign, said otherwise"
        got = numbers[0]
        if sorted(got) == sorted(truth):
            return "digits out of order"
        if len(got) == len(truth) and sum(a != b for a, b in zip(got, truth, strict=True)) == 1:
            return "one digit wrong"
        if abs(len(got) - len(truth)) == 1 and (
                _is_subsequence(got, truth) or _is_subsequence(truth, got)):
            return "a digit missing or extra"
        return "another number"
    words = said.split()
    if truth in words:
        return "the right sign, said otherwise"
    return "another sign word" if _SIGN_WORDS.intersection(words) else "not a sign word"


def misread_rows(predictions: Iterable[Mapping[str, Any]], task: str | None = "needle"
                 ) -> list[dict[str, Any]]:
    """Wrong answers counted per method, ratio and `misread` kind.

    Args:
        predictions: evaluation rows (``method``, ``ratio``, ``answer``, ``prediction``,
            ``correct``; ``task`` where the evaluation has several).
        task: only rows of this task; rows without a task (a haystack's, a still's) always
            count.

    Returns:
        ``{"method", "ratio", "kind", "n"}`` rows.

    Example:
        >>> misread_rows([{"method": "vst", "ratio": 16, "answer": "344", "prediction": "434",
        ...                "correct": False, "task": "needle"}])
        [{'method': 'vst', 'ratio': 16, 'kind': 'digits out of order', 'n': 1}]
    """
    counts: Counter[tuple[str, int | None, str]] = Counter()
    for p in predictions:
        if p["correct"] or (task is not None and p.get("task", task) != task):
            continue
        counts[(p["method"], p["ratio"], misread(str(p["answer"]), str(p["prediction"])))] += 1
    return [{"method": m, "ratio": r, "kind": k, "n": n} for (m, r, k), n in counts.items()]


def markdown_misreads(rows: Sequence[Mapping[str, Any]]) -> str:
    """The misread rows as a markdown section (a line per method and ratio, a column per kind),
    opening with a blank line so that it can follow another table; "" without rows."""
    if not rows:
        return ""
    kinds = [k for k in MISREADS if any(r["kind"] == k for r in rows)]
    keys = list(dict.fromkeys((r["method"], r["ratio"]) for r in rows))
    n: Counter[tuple[str, int | None, str]] = Counter()
    for r in rows:
        n[(r["method"], r["ratio"], r["kind"])] += r["n"]
    lines = ["", "## wrong sign readings, by what went wrong", "",
             "| method | wrong | " + " | ".join(kinds) + " |", "|---|---:|" + "---:|" * len(kinds)]
    for method, ratio in keys:
        label = method + (f" {ratio}x" if ratio else "")
        wrong = sum(n[(method, ratio, k)] for k in kinds)
        lines.append(f"| {label} | {wrong} | "
                     + " | ".join(str(n[(method, ratio, k)]) for k in kinds) + " |")
    return "\n".join(lines + [""]) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Print the misread table of one or more evaluation JSONs, their wrong answers together."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", type=Path,
                        help="evaluation JSONs (training.niah, training.evaluate, "
                             "training.reading_probe)")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for path in args.reports:
        try:
            rows += misread_rows(json.loads(path.read_text())["predictions"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            parser.error(f"{path}: {type(e).__name__}: {e} (an evaluation JSON with "
                         "predictions is expected)")
    # markdown_misreads sums the files' rows of one method, ratio and kind
    print(markdown_misreads(rows).lstrip("\n") or "no wrong sign readings\n", end="")


if __name__ == "__main__":
    main()
