"""Wrong sign readings sorted by what went wrong, and the reports that carry the table."""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path

import pytest

from training import accuracy_report as ar
from training import misreads
from training import niah as nh
from training import reading_probe as rp
from training.misreads import MISREADS, main, markdown_misreads, misread, misread_rows


@pytest.mark.parametrize(("answer", "prediction", "kind"), [
    ("344", "434", "digits out of order"),
    ("717", "The sign said 771.", "digits out of order"),
    ("985", "995", "one digit wrong"),
    ("774", "74", "a digit missing or extra"),
    ("42", "412", "a digit missing or extra"),
    ("421", "341", "another number"),  # two digits wrong
    ("219", "1", "another number"),
    ("421", "cat", "no number"),
    ("421", "", "no number"),
    ("42", "forty-one", "one digit wrong"),  # number words are numbers
    ("342", "342, 234", "the right sign, said otherwise"),  # right, then more
    ("344", "3 4 4", "the right sign, said otherwise"),  # digits said one at a time
    ("344", "three four four", "the right sign, said otherwise"),
    ("42", "042", "the right sign, said otherwise"),  # leading zeros
    ("421", "124 and 999", "digits out of order"),  # the first number is the reading
    ("cat", "cat dog", "the right sign, said otherwise"),
    ("cat", "the sign said dog", "another sign word"),
    ("cat", "Jar.", "another sign word"),
    ("CAT", "cup", "another sign word"),  # sign texts are upper case, answers are not
    ("cat", "a red circle", "not a sign word"),
    ("cat", "", "not a sign word"),
    ("cat", "417", "not a sign word"),
])
def test_each_kind_of_misread(answer: str, prediction: str, kind: str) -> None:
    assert misread(answer, prediction) == kind
    assert kind in MISREADS


def test_docstring_examples() -> None:
    result = doctest.testmod(misreads)
    assert result.failed == 0 and result.attempted == 4


def _p(answer: str, prediction: str, correct: bool = False, method: str = "vst",
       ratio: int | None = 16, **extra) -> dict:
    return {"method": method, "ratio": ratio, "answer": answer, "prediction": prediction,
            "correct": correct, **extra}


def test_rows_count_only_wrong_needle_answers() -> None:
    preds = [_p("344", "434"), _p("344", "434"), _p("344", "344", correct=True),
             _p("cat", "dog", task="needle"), _p("cat", "dog", task="attribute"),
             _p("985", "995", method="full", ratio=None)]
    rows = {(r["method"], r["ratio"], r["kind"]): r["n"] for r in misread_rows(preds)}
    assert rows == {("vst", 16, "digits out of order"): 2, ("vst", 16, "another sign word"): 1,
                    ("full", None, "one digit wrong"): 1}
    every_task = misread_rows(preds, task=None)
    assert sum(r["n"] for r in every_task) == 5


def test_table_has_a_column_per_kind_seen_in_their_order() -> None:
    rows = misread_rows([_p("cat", "dog"), _p("344", "434"), _p("344", "9", method="avg_pool"),
                         _p("985", "995", method="full", ratio=None)])
    md = markdown_misreads(rows)
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert header == ("| method | wrong | digits out of order | one digit wrong | "
                      "another number | another sign word |")
    assert "| vst 16x | 2 | 1 | 0 | 0 | 1 |" in md
    assert "| avg_pool 16x | 1 | 0 | 0 | 1 | 0 |" in md
    assert "| full | 1 | 0 | 1 | 0 | 0 |" in md
    assert markdown_misreads([]) == ""


def test_cli_merges_reports_and_refuses_bad_files(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    for name, preds in (("a", [_p("344", "434")]), ("b", [_p("344", "443"), _p("1", "1", True)])):
        (tmp_path / f"{name}.json").write_text(json.dumps({"predictions": preds}))
    main([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert out.startswith("## wrong sign readings") and "| vst 16x | 2 | 2 |" in out
    (tmp_path / "right.json").write_text(json.dumps({"predictions": [_p("1", "1", True)]}))
    main([str(tmp_path / "right.json")])
    assert capsys.readouterr().out == "no wrong sign readings\n"
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "probe.json").write_text(json.dumps([{"step": 400, "sign_read_acc": 0.7}]))
    (tmp_path / "fields.json").write_text(json.dumps({"predictions": [{"correct": False}]}))
    for bad in ("bad.json", "missing.json", "probe.json", "fields.json"):
        with pytest.raises(SystemExit):
            main([str(tmp_path / bad)])
        assert bad in capsys.readouterr().err


def _wrong_in_table(md: str) -> int:
    """The 'wrong' column summed over the misread table's rows (0 when there is none)."""
    table = md.split("## wrong sign readings", 1)
    if len(table) == 1:
        return 0
    return sum(int(m) for m in re.findall(r"^\| [^|]+ \| (\d+) \|", table[1], re.M))


def test_evaluation_reports_carry_the_table(tmp_path: Path) -> None:
    rows = [{"method": "vst", "ratio": 16, "task": t, "n": 2, "correct": 0, "accuracy": 0.0,
             "memory_tokens": 4.0, "frames_kept": 2.0} for t in ("all", "needle")]
    preds = [_p("344", "434", task="needle", question="q", video="v", form="needle_number"),
             _p("cat", "dog", task="needle", question="q2", video="v", form="needle_word"),
             _p("2", "3", task="count", question="q3", video="v", form="count_objects")]
    ar.write_report(rows, tmp_path, "x", {}, preds)
    md = (tmp_path / "x.md").read_text()
    assert "| vst 16x | 2 | 1 | 1 |" in md  # the count question is no sign reading


def test_haystack_and_still_reports_count_every_wrong_reading(tmp_path: Path) -> None:
    tiny = ["--model", "tiny-random", "--device", "cpu", "--out", str(tmp_path)]
    nh.main([*tiny, "--frames", "64", "--depths", "0,1", "--ratio", "4", "--window", "16",
             "--max-new-tokens", "3", "--methods", "vst,last_n"])
    rp.main([*tiny, "--n", "3", "--ratios", "4", "--methods", "vst"])
    for name in ("niah", "reading_stills"):
        preds = json.loads((tmp_path / f"{name}.json").read_text())["predictions"]
        md = (tmp_path / f"{name}.md").read_text()
        assert _wrong_in_table(md) == sum(not p["correct"] for p in preds), name
