"""The binding probe: stills whose colours and shapes all differ, every (still, form, method,
ratio) answered once, an oracle scores 100 %, a model naming the wrong object of the still
scores 0 % right and 100 % "names one of the still's", the tally adds up, the CLI writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamvxl.world import WorldConfig
from streamvxl.world.scene import COLOURS, HELD_OUT_COMBOS, SHAPES
from training import binding_probe as bp


def test_stills_name_one_object_per_colour_and_shape() -> None:
    rng = np.random.default_rng(3)
    world = WorldConfig(num_frames=1, height=64, width=64, max_objects=3)
    held = 0
    for i in range(40):
        ep = bp.distinct_still(rng, world, 2 + i % 2)
        assert len(ep.objects) == 2 + i % 2
        assert len({o.colour for o in ep.objects}) == len({o.shape for o in ep.objects}) \
            == len(ep.objects)
        held += sum(o.combo in HELD_OUT_COMBOS for o in ep.objects)
    assert held > 0  # the eval split draws held-out pairings
    for _ in range(20):
        ep = bp.distinct_still(rng, world, 3, "trained")
        assert not any(o.combo in HELD_OUT_COMBOS for o in ep.objects)


def test_unknown_pairings_are_refused() -> None:
    with pytest.raises(ValueError, match="pairings"):
        bp.binding_probe("tiny-random", n=1, pairings="held_out", device="cpu")


def test_probe_on_a_tiny_model_records_every_question() -> None:
    records = bp.binding_probe("tiny-random", n=4, ratios=(2, 4), methods=("vst", "full"),
                               max_new_tokens=2, device="cpu")
    assert len(records) == 4 * 2 * 3
    assert {(r["method"], r["ratio"]) for r in records} == {("vst", 2), ("vst", 4),
                                                            ("full", None)}
    assert [r["k"] for r in records[::6]] == [2, 3, 2, 3]
    for r in records:
        values = SHAPES if r["form"] == "shape_of_colour" else tuple(COLOURS)
        assert r["answer"] in r["shown"] and len(r["shown"]) == r["k"]
        assert set(r["shown"]) <= set(values) and r["pairing"] in ("trained", "held_out")
        assert r["right"] == (bp.named_values(r["prediction"], values) == {r["answer"]})
    again = bp.binding_probe("tiny-random", n=4, ratios=(2, 4), methods=("vst", "full"),
                             max_new_tokens=2, device="cpu")
    assert again == records  # a pure function of its arguments


def _answered_by(monkeypatch, pick) -> list[dict]:
    """The probe with every answer replaced by ``pick(record_so_far)``'s text."""
    first = bp.binding_probe("tiny-random", n=6, ratios=(2,), methods=("vst",),
                             max_new_tokens=1, device="cpu", seed=5)
    truth = {(f"still-{r['still']}", r["question"]): r for r in first}
    monkeypatch.setattr(bp, "answer_question", lambda memory, question, ids, decoding:
                        pick(truth[(memory.video.name, question)]))
    return bp.binding_probe("tiny-random", n=6, ratios=(2,), methods=("vst",),
                            max_new_tokens=1, device="cpu", seed=5)


def test_an_oracle_is_right_and_a_model_that_does_not_bind_is_not(monkeypatch) -> None:
    oracle = _answered_by(monkeypatch, lambda r: f"The {r['answer']}.")
    assert oracle and all(r["right"] and r["names_still"] for r in oracle)

    wrong = _answered_by(monkeypatch, lambda r: next(v for v in r["shown"]
                                                     if v != r["answer"]))
    assert wrong and not any(r["right"] for r in wrong)
    assert all(r["names_still"] for r in wrong)


def test_hand_made_records_tally_and_table() -> None:
    def r(form, k, pairing, right, names=True, method="vst", ratio=16):
        return {"method": method, "ratio": ratio, "form": form, "k": k, "pairing": pairing,
                "right": right, "names_still": names}
    rows = bp.summary_rows([r("shape_of_colour", 2, "trained", True),
                            r("shape_of_colour", 2, "held_out", False),
                            r("shape_of_colour", 2, "held_out", False, names=False),
                            r("colour_of_shape", 3, "trained", True, method="full",
                              ratio=None)])
    whole = next(x for x in rows if (x["form"], x["pairing"], x["method"])
                 == ("shape_of_colour", "all", "vst"))
    assert (whole["n"], whole["right"], whole["names_still"], whole["chance"]) == (3, 1, 2, 0.5)
    md = bp.markdown_table(rows)
    assert ("| vst | 16x | shape_of_colour | 2 | 1 / 3 (33 %) | 1 / 1 (100 %) | 0 / 2 (0 %) "
            "| 50 % | 67 % |") in md
    assert "| full | - | colour_of_shape | 3 | 1 / 1 (100 %) | 1 / 1 (100 %) | - | 33 % |" in md
    assert md.index("| vst |") < md.index("| full |")  # methods in the order they were asked


def test_cli_writes_json_and_markdown(tmp_path: Path) -> None:
    bp.main(["--model", "tiny-random", "--n", "2", "--ratios", "2", "--methods", "vst",
             "--device", "cpu", "--out", str(tmp_path), "--name", "p"])
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["settings"]["n"] == 2 and len(data["records"]) == 4
    assert "Binding on one still" in (tmp_path / "p.md").read_text()
