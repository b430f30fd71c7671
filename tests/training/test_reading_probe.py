"""The stills reading probe: where a sign's characters fall, and the bookkeeping of answers.

- `sign_cells` finds the token columns the characters occupy, board margin excluded.
- On a tiny random model every (still, method, ratio) is answered once (``full`` once per
  still), the groups add up, and an oracle answerer scores 100 %.
"""

from __future__ import annotations

import pytest

from streamvxl.world import Sign
from training import reading_probe as rp


@pytest.mark.parametrize(("x", "text", "cells"), [
    (0, "7", (0, 0)),      # glyph at x 2..6
    (9, "42", (0, 1)),     # x 11..21 crosses 16
    (14, "CA", (1, 1)),    # x 16..26
    (14, "CAT", (1, 2)),   # x 16..32 reaches the third column
])
def test_sign_cells_by_hand(x: int, text: str, cells: tuple[int, int]) -> None:
    assert rp.sign_cells(Sign(text, 0, 1, x=x, y=0), cell=16) == cells


def test_sign_cells_scale() -> None:
    # scale 2: margin 4 px, two glyphs 2 * (2 * 6 - 1) = 22 px: x 4..25
    assert rp.sign_cells(Sign("12", 0, 1, x=0, y=0, scale=2), cell=16) == (0, 1)
    assert rp.sign_cells(Sign("1", 0, 1, x=0, y=0, scale=2), cell=16) == (0, 0)


def test_probe_on_a_tiny_model() -> None:
    records = rp.reading_probe("tiny-random", n=3, ratios=(2, 4), methods=("vst", "full"),
                               max_new_tokens=2, device="cpu")
    assert len(records) == 3 * 3
    assert {(r["method"], r["ratio"]) for r in records} == {("vst", 2), ("vst", 4),
                                                            ("full", None)}
    for r in records:
        assert r["kind"] == ("number" if r["text"].isdigit() else "word")
        assert r["length"] == len(r["text"]) and isinstance(r["correct"], bool)
    rows = rp.summary_rows(records)
    by = {(r["method"], r["ratio"], r["group"]): r for r in rows}
    for method, ratio in (("vst", 2), ("full", None)):
        whole = by[(method, ratio, "all")]
        assert whole["n"] == 3
        kinds = [by.get((method, ratio, k), {"n": 0, "correct": 0}) for k in ("word", "number")]
        assert sum(k["n"] for k in kinds) == 3
        assert sum(k["correct"] for k in kinds) == whole["correct"]
    md = rp.markdown_table(rows)
    assert "| sign | vst 2x | vst 4x | full |" in md and "| all | " in md



def test_oracle_reads_everything(monkeypatch) -> None:
    # answer with the truth: the probe scores it right every time
    def oracle(memory, question, ids, decoding):
        return answers[memory.video.name]

    answers: dict[str, str] = {}
    first = rp.reading_probe("tiny-random", n=4, ratios=(2,), methods=("vst",),
                             max_new_tokens=1, device="cpu", seed=5)
    for r in first:
        answers[f"still-{r['still']}"] = r["answer"]
    monkeypatch.setattr(rp, "answer_question", oracle)
    again = rp.reading_probe("tiny-random", n=4, ratios=(2,), methods=("vst", "full"),
                             max_new_tokens=1, device="cpu", seed=5)
    assert len(again) == 8 and all(r["correct"] for r in again)
    assert [r["text"] for r in again[::2]] == [r["text"] for r in first]  # same stills
