"""Scoring a model's free-text answer against a `QA`: normalisation and tolerant matching.

`normalize_answer` lowercases, drops punctuation and articles, and writes number words as digits
("Forty-two." -> "42", "the 2nd" -> "second"). `is_correct` accepts any of the QA's accepted
variants after normalisation, plus per-kind leniency: a single matching number for counts
("3 objects"), ``time_tolerance`` seconds for time answers ("12" for "12 seconds"), the leading
yes/no for yes/no questions ("yes, it did"), and "then"/"and" fillers in order lists.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .questions import QA

_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_UNIT_VALUE = {w: i for i, w in enumerate(_UNITS)}
_TEEN_VALUE = {w: 10 + i for i, w in enumerate(_TEENS)}
_TENS_VALUE = {w: 10 * i for i, w in enumerate(_TENS) if w}
_NUMBER_START = set(_UNIT_VALUE) | set(_TEEN_VALUE) | set(_TENS_VALUE) | {"hundred"}
_SMALL = set(_UNIT_VALUE) | set(_TEEN_VALUE) | set(_TENS_VALUE)
_ORDINALS = {"1st": "first", "2nd": "second", "3rd": "third", "4th": "fourth", "5th": "fifth"}
_ARTICLES = {"a", "an", "the"}
_LIST_FILLERS = {"then", "and", "next", "finally", "after", "that", "followed", "by", "lastly"}
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def number_to_words(n: int) -> str:
    """English words for 0 <= n <= 999, e.g. 42 -> "forty-two", 105 -> "one hundred five".

    Example:
        >>> number_to_words(342)
        'three hundred forty-two'
    """
    if not 0 <= n <= 999:
        raise ValueError(f"number_to_words takes 0..999, got {n}")
    if n < 10:
        return _UNITS[n]
    if n < 20:
        return _TEENS[n - 10]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _TENS[tens] + (f"-{_UNITS[unit]}" if unit else "")
    hundreds, rest = divmod(n, 100)
    return f"{_UNITS[hundreds]} hundred" + (f" {number_to_words(rest)}" if rest else "")


def _read_number(tokens: list[str], i: int) -> tuple[int, int]:
    """Parse number words starting at ``tokens[i]``: (value, index after the last word used)."""
    hundreds: int | None = None
    rest, state, j = 0, "start", i
    while j < len(tokens):
        w = tokens[j]
        if w in _UNIT_VALUE and state in ("start", "tens", "hundred", "and") and not (
                w == "zero" and state != "start"):
            rest, state = rest + _UNIT_VALUE[w], "unit"
        elif w in _TEEN_VALUE and state in ("start", "hundred", "and"):
            rest, state = rest + _TEEN_VALUE[w], "teen"
        elif w in _TENS_VALUE and state in ("start", "hundred", "and"):
            rest, state = rest + _TENS_VALUE[w], "tens"
        elif w == "hundred" and state in ("start", "unit") and hundreds is None:
            hundreds, rest, state = (rest or 1) * 100, 0, "hundred"
        elif (w == "and" and state == "hundred" and j + 1 < len(tokens)
              and tokens[j + 1] in _SMALL):
            state = "and"
        else:
            break
        j += 1
    return (hundreds or 0) + rest, j


def normalize_answer(text: str) -> str:
    """Canonical form of an answer for comparison.

    Example:
        >>> normalize_answer("The Red Circle, then twenty-one!")
        'red circle then 21'
    """
    text = text.lower()
    text = re.sub(r"[-_/]", " ", text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # keep only decimal points
    text = re.sub(r"[^\w\s.]", " ", text)
    tokens = [_ORDINALS.get(t, t) for t in text.split()]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] in _NUMBER_START:
            value, i = _read_number(tokens, i)
            out.append(str(value))
        else:
            out.append(tokens[i])
            i += 1
    return " ".join(t for t in out if t not in _ARTICLES)


def _numbers(text: str) -> list[float]:
    return [float(m) for m in _NUMBER_RE.findall(text)]


def _without_fillers(text: str) -> str:
    return " ".join(t for t in text.split() if t not in _LIST_FILLERS)


_DENIALS = re.compile(
    r"^(no|none|nothing|never|neither|not)\b"
    r"|\b(did not|didn t|was not|wasn t|were not|weren t|there was no|there were no|"
    r"not see|not seen|no such|not appear|not visible|nothing|none)\b")


def denies(text: str) -> bool:
    """Whether an answer says nothing of the kind was seen ("none", "There was no star.",
    "I did not see one", "nothing").

    Example:
        >>> denies("There was no star."), denies("None"), denies("red")
        (True, True, False)
    """
    return bool(_DENIALS.search(normalize_answer(text)))


def is_correct(prediction: str, qa: QA, time_tolerance: float = 1.0) -> bool:
    """Whether a free-text ``prediction`` answers ``qa`` correctly.

    Args:
        prediction: the model's answer.
        qa: the question with its canonical answer, accepted variants and answer kind.
        time_tolerance: seconds a time answer may be off by.

    Example:
        >>> from streamvxl.world.questions import QA
        >>> qa = QA("count", "count_objects", "How many objects appeared?", "3",
        ...         ("3", "three"), (0, 10), "number")
        >>> is_correct("Three.", qa), is_correct("3 objects", qa), is_correct("4", qa)
        (True, True, False)
    """
    pred = normalize_answer(prediction)
    if not pred:
        return False
    if qa.kind == "absent":
        return denies(prediction)
    accepted = {normalize_answer(a) for a in (qa.answer, *qa.accepted)}
    if pred in accepted:
        return True
    truth = normalize_answer(qa.answer)
    if qa.kind == "yes_no":
        return pred.split()[0] == truth
    if qa.kind in ("number", "seconds"):
        got, want = _numbers(pred), _numbers(truth)
        if len(got) != 1 or len(want) != 1:
            return False
        tolerance = time_tolerance if qa.kind == "seconds" else 0.0
        return abs(got[0] - want[0]) <= tolerance + 1e-9
    if qa.kind == "list":
        return _without_fillers(pred) in {_without_fillers(a) for a in accepted}
    return False
