"""The existence stills probe: every (still, question, method, ratio) answered once, the tally
adds up by hand, an oracle scores 100 %, and the CLI writes its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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

    def oracle(memory, question, ids, decoding, yes, no):
        said = truth[(memory.video.name, question)]
        return said, 5.0 if said == "yes" else -5.0
    monkeypatch.setattr(ep, "answer_and_score", oracle)
    again = ep.existence_probe("tiny-random", n=3, ratios=(2,), methods=("vst", "full"),
                               max_new_tokens=1, device="cpu", seed=4)
    assert again and all(rec["correct"] for rec in again)
    assert [rec["question"] for rec in again[::2]] == [rec["question"] for rec in first]
    ranking = ep.ranking_rows(again)
    assert ranking and all(r["auc"] == 1.0 for r in ranking)


def test_scores_are_finite_and_follow_the_input() -> None:
    records = ep.existence_probe("tiny-random", n=3, ratios=(2,), methods=("vst", "full"),
                                 questions=2, max_new_tokens=1, device="cpu", seed=1)
    scores = [r["score"] for r in records]
    assert all(isinstance(x, float) and np.isfinite(x) for x in scores)
    assert len(set(scores)) > 1  # a margin per still and question, not a constant


def test_rank_auc_is_the_pairwise_chance() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 40).astype(float)
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg]
    assert ep.rank_auc(pos, neg) == pytest.approx(sum(pairs) / len(pairs))
    assert ep.rank_auc([3.0], [1.0, 2.0]) == 1.0 and ep.rank_auc([1.0], [1.0]) == 0.5
    with pytest.raises(ValueError):
        ep.rank_auc([], [1.0])


def test_ranking_rows_and_their_table() -> None:
    def r(answer, naming, score):
        return {"method": "vst", "ratio": 16, "answer": answer, "naming": naming,
                "yes": score > 0, "correct": (score > 0) == (answer == "yes"), "score": score}
    records = [r("yes", "shape", 2.0), r("no", "shape", 1.0), r("yes", "colour", 0.0),
               r("no", "colour", 1.0)]
    ranking = {x["naming"]: x for x in ep.ranking_rows(records)}
    assert ranking["shape"]["auc"] == 1.0 and ranking["colour"]["auc"] == 0.0
    assert ranking["all"]["auc"] == 0.5 and (ranking["all"]["present"],
                                             ranking["all"]["absent"]) == (2, 2)
    assert "both" not in ranking  # no thing named by both parts on either side
    md = ep.markdown_table(ep.summary_rows(records), ranking=list(ranking.values()))
    assert "| vst | 16x | 0.50 | - | 1.00 | 0.00 |" in md


def test_cli_writes_json_and_markdown(tmp_path: Path) -> None:
    ep.main(["--model", "tiny-random", "--n", "2", "--questions", "1", "--ratios", "2",
             "--methods", "vst", "--device", "cpu", "--out", str(tmp_path), "--name", "p"])
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["settings"]["n"] == 2 and len(data["records"]) == 2
    assert "Existence on one still" in (tmp_path / "p.md").read_text()


def test_videos_ask_only_yes_no_existence_with_both_answers() -> None:
    world = ep.WorldConfig(num_frames=12, max_objects=3)
    rng = np.random.default_rng(3)
    drawn = [ep.draw_sample(rng, world, 3) for _ in range(20)]
    assert all(s.frames.shape[0] <= 12 and 1 <= len(s.qa) <= 3 for s in drawn)
    qa = [q for s in drawn for q in s.qa]
    assert {q.form for q in qa} == set(ep.EXIST_YES_NO_FORMS)  # never the denial form
    assert {q.answer for q in qa} == {"yes", "no"}
    # absent things named the ways present ones are (balanced), not by both parts far more
    assert {ep.naming(q) for q in qa if q.answer == "no"} == {"both", "shape", "colour"}


def test_the_video_probe_and_its_report(tmp_path: Path) -> None:
    ep.main(["--model", "tiny-random", "--n", "2", "--questions", "2", "--ratios", "2",
             "--methods", "vst", "--frames", "8", "--device", "cpu", "--out", str(tmp_path),
             "--name", "v"])
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["settings"]["frames"] == 8
    assert {r["form"] for r in data["records"]} <= set(ep.EXIST_YES_NO_FORMS)
    assert 2 <= len(data["records"]) <= 4 and {r["still"] for r in data["records"]} == {0, 1}
    assert "Existence on videos of 8 frames" in (tmp_path / "v.md").read_text()
    with pytest.raises(ValueError, match="frames"):
        ep.existence_probe("tiny-random", n=1, frames=0, device="cpu")
