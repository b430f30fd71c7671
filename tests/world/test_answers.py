"""Answer matching accepts the variants a model may write and rejects wrong answers."""

from __future__ import annotations

import pytest

from streamvxl.world.answers import is_correct, normalize_answer, number_to_words
from streamvxl.world.questions import QA, number_variants, seconds_variants


def _qa(answer: str, kind: str = "text", accepted: tuple[str, ...] = ()) -> QA:
    return QA("count", "test", "?", answer, accepted or (answer,), (0, 1), kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("text, normal", [
    ("Three.", "3"),
    ("twenty-one", "21"),
    ("one hundred and five", "105"),
    ("nine hundred ninety nine", "999"),
    ("The Red Circle!", "red circle"),
    ("the 2nd", "second"),
    ("12.5 s", "12.5 s"),
    ("zero", "0"),
])
def test_normalize(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


def test_number_words_round_trip() -> None:
    for n in range(1000):
        assert normalize_answer(number_to_words(n)) == str(n)


@pytest.mark.parametrize("pred, ok", [
    ("3", True), ("three", True), ("Three.", True), ("3 objects", True), ("there were 3", True),
    ("4", False), ("3 or 4", False), ("", False), ("thirty", False),
])
def test_counts(pred: str, ok: bool) -> None:
    assert is_correct(pred, _qa("3", "number", number_variants(3))) is ok


@pytest.mark.parametrize("pred, ok", [
    ("12 seconds", True), ("12", True), ("twelve seconds", True), ("at 13 s", True),
    ("11", True), ("11.5 seconds", True), ("14", False), ("10 seconds", False), ("soon", False),
])
def test_time_within_one_second(pred: str, ok: bool) -> None:
    assert is_correct(pred, _qa("12 seconds", "seconds", seconds_variants(12))) is ok


def test_time_tolerance_is_adjustable() -> None:
    qa = _qa("12 seconds", "seconds", seconds_variants(12))
    assert not is_correct("13", qa, time_tolerance=0.0)
    assert is_correct("14", qa, time_tolerance=2.0)


@pytest.mark.parametrize("pred, ok", [
    ("yes", True), ("Yes, it did.", True), ("YES", True), ("no", False), ("maybe yes", False),
])
def test_yes_no(pred: str, ok: bool) -> None:
    assert is_correct(pred, _qa("yes", "yes_no")) is ok


@pytest.mark.parametrize("pred, ok", [
    ("red circle", True), ("the red circle", True), ("circle", True), ("Red.", True),
    ("blue square", False), ("red square", False), ("red circle and blue square", False),
])
def test_object_names(pred: str, ok: bool) -> None:
    qa = _qa("red circle", accepted=("red circle", "circle", "red", "red one"))
    assert is_correct(pred, qa) is ok


@pytest.mark.parametrize("pred, ok", [
    ("red circle, blue square, green star", True),
    ("The red circle, then the blue square, and then the green star.", True),
    ("red circle blue square green star", True),
    ("blue square, red circle, green star", False),
    ("red circle, blue square", False),
])
def test_order_lists(pred: str, ok: bool) -> None:
    answer = "red circle, blue square, green star"
    assert is_correct(pred, _qa(answer, "list")) is ok


def test_needles() -> None:
    assert is_correct("CAT", _qa("cat"))
    assert is_correct("forty-two", _qa("42", "number", number_variants(42)))
    assert not is_correct("24", _qa("42", "number", number_variants(42)))
    assert not is_correct("dog", _qa("cat"))


@pytest.mark.parametrize(("prediction", "right"), [
    ("none", True), ("There was no star.", True), ("I did not see one", True),
    ("Nothing.", True), ("no", True), ("I didn't see a star", True), ("it was not visible", True),
    ("red", False), ("The red star", False), ("blue, I think", False), ("", False),
])
def test_absent_answers_are_right_when_they_deny(prediction: str, right: bool) -> None:
    qa = QA("attribute", "colour_of_absent", "What colour was the star?", "none",
            ("none",), (0, 10), "absent")
    assert is_correct(prediction, qa) is right
