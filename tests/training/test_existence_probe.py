"""The existence stills probe: every (still, question, method, ratio) answered once, the tally
adds up by hand, an oracle scores 100 %, and the CLI writes its report."""

from __future__ import annotations

import json
from pathlib import Path

from training import existence_probe as ep


def test_probe_on_a_tiny_model_and_its_tally() -> None:
    records = ep.existence_probe("tiny-random", n=3, ratios=(2, 4), methods=("vst", "full"),
                                 questions=2, max_new_tokens=2, device="cpu")
    asked = len({(r["still"], r["question"]) for r in records})
    assert 3 <= asked <= 6 and len(records) == 3 * asked
    assert {(r["method"], r["ratio"]) for r in records} == {("vst", 2), ("vst", 4),
                                                            ("full", None)}
    assert all(r["naming"] in ("both", "shape", "colour") and r["answer"] in ("yes", "no")
               for r in records)
    rows = ep.summary_rows(records)
    by = {(r["method"], r["ratio"], r["answer"], r["naming"]): r for r in rows}
    for method, ratio in (("vst", 2), ("full", None)):
        mine = [r for r in records if (r["method"], r["ratio"]) == (method, ratio)]
        for truth in ("yes", "no"):
            of_truth = [r for r in mine if r["answer"] == truth]
            if not of_truth:
                continue
            whole = by[(method, ratio, truth, "all")]
            assert whole["n"] == len(of_truth)
            assert whole["yes"] == sum(r["yes"] for r in of_truth)
            assert whole["correct"] == sum(r["correct"] for r in of_truth)
            assert sum(by.get((method, ratio, truth, k), {"n": 0})["n"]
                       for k in ("both", "shape", "colour")) == whole["n"]


def test_hand_made_records_tally_and_table() -> None:
    def r(answer, naming, said, method="vst", ratio=16):
        return {"method": method, "ratio": ratio, "answer": answer, "naming": naming,
                "yes": said == "yes", "correct": said == answer}
    rows = ep.summary_rows([r("yes", "both", "yes"), r("yes", "shape", "no"),
                            r("no", "colour", "yes"), r("no", "colour", "no"),
                            r("no", "both", "no", "full", None)])
    md = ep.markdown_table(rows)
    assert "| vst | 16x | there | 1 / 2 | 1 / 1 | 0 / 1 | - | 50.0 % |" in md
    assert "| vst | 16x | not there | 1 / 2 | - | - | 1 / 2 | 50.0 % |" in md
    assert "| full | - | not there | 0 / 1 | 0 / 1 | - | - | 100.0 % |" in md


def test_an_oracle_is_right_on_every_still(monkeypatch) -> None:
    truth: dict[tuple[str, str], str] = {}
    first = ep.existence_probe("tiny-random", n=3, ratios=(2,), methods=("vst",),
                               max_new_tokens=1, device="cpu", seed=4)
    for rec in first:
        truth[(f"still-{rec['still']}", rec["question"])] = rec["answer"]
    monkeypatch.setattr(ep, "answer_question",
                        lambda memory, question, ids, decoding: truth[(memory.video.name,
                                                                       question)])
    again = ep.existence_probe("tiny-random", n=3, ratios=(2,), methods=("vst", "full"),
                               max_new_tokens=1, device="cpu", seed=4)
    assert again and all(rec["correct"] for rec in again)
    assert [rec["question"] for rec in again[::2]] == [rec["question"] for rec in first]


def test_cli_writes_json_and_markdown(tmp_path: Path) -> None:
    ep.main(["--model", "tiny-random", "--n", "2", "--questions", "1", "--ratios", "2",
             "--methods", "vst", "--device", "cpu", "--out", str(tmp_path), "--name", "p"])
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["settings"]["n"] == 2 and len(data["records"]) == 2
    assert "Existence on one still" in (tmp_path / "p.md").read_text()
