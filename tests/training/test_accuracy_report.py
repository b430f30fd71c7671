"""The accuracy reports, counted by hand: tables per task, form, wording, pairing, naming and
frame size from `training.evaluate`'s rows and predictions."""

from __future__ import annotations

import logging
from pathlib import Path

from training import accuracy_report as ar
from training.baselines import METHODS


def test_reports(tmp_path: Path, caplog) -> None:
    rows = [{"method": m, "ratio": q, "task": t, "n": 4, "correct": 1, "accuracy": 0.25,
             "memory_tokens": 10.0, "frames_kept": 3.0}
            for m in METHODS for q in (2, 4) for t in ("count", "all")]
    md = ar.markdown_report(rows)
    assert md.count("| vst | 25.0 | 25.0 |") == 2 and "## count" in md and "## all" in md
    with caplog.at_level(logging.WARNING, logger="training.accuracy_report"):
        written = ar.write_report(rows, tmp_path, "x", {"a": 1})
    names = {p.name for p in written}
    assert {"x.json", "x.md"} <= names
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert names == {"x.json", "x.md"} and "matplotlib is not installed" in caplog.text
    else:
        assert "x.png" in names


def test_needles_split_by_form() -> None:
    def pred(method, ratio, form, correct, task="needle"):
        return {"method": method, "ratio": ratio, "task": task, "form": form,
                "correct": correct}

    preds = [pred("vst", 2, "needle_word", True), pred("vst", 2, "needle_word", False),
             pred("vst", 16, "needle_number", True), pred("vst", 2, "needle_number", False),
             pred("full", None, "needle_word", True),  # answered once, counts at 2x and 16x
             pred("vst", 2, "color_of_shape", True, task="attribute")]
    cells = {(r["method"], r["ratio"], r["form"]): (r["correct"], r["n"])
             for r in ar.form_rows(preds, "needle")}
    assert cells == {("vst", 2, "needle_word"): (1, 2), ("vst", 16, "needle_number"): (1, 1),
                     ("vst", 2, "needle_number"): (0, 1), ("full", 2, "needle_word"): (1, 1),
                     ("full", 16, "needle_word"): (1, 1)}
    rows = [{"method": m, "ratio": q, "task": "all", "n": 1, "correct": 1, "accuracy": 1.0,
             "memory_tokens": 1.0, "frames_kept": 1.0} for m in ("vst", "full") for q in (2, 16)]
    md = ar.markdown_report(rows, forms=ar.form_rows(preds, "needle"))
    assert "| vst needle_word | 50.0 (n=2) | - |" in md
    assert "| vst needle_number | 0.0 (n=1) | 100.0 (n=1) |" in md
    assert "| full needle_word | 100.0 (n=1) | 100.0 (n=1) |" in md
    assert "full needle_number" not in md  # no such question: no row
    outages = [pred("vst", 2, "went_offline", True, "offline"),
               pred("vst", 2, "never_offline", False, "offline")]
    md = ar.markdown_report(rows, forms=ar.form_rows(preds, "needle")
                            + ar.form_rows(outages, "offline"))
    assert "## needle by question form" in md and "## offline by question form" in md
    assert "| vst never_offline | 0.0 (n=1) | - |" in md


def test_accuracy_splits_by_wording_training_against_held_out() -> None:
    """Counted by hand: the split keeps each task's and the whole set's questions apart by
    wording, and full (answered once, ratio None) counts at every ratio."""
    def p(method, ratio, task, novel, correct):
        return {"method": method, "ratio": ratio, "task": task, "novel_phrasing": novel,
                "correct": correct}
    preds = [p("vst", 16, "exist", False, True), p("vst", 16, "exist", False, False),
             p("vst", 16, "exist", True, True), p("vst", 16, "now", True, False),
             p("vst", 2, "now", False, True), p("full", None, "now", True, True)]
    cells = {(c["method"], c["ratio"], c["task"], c["novel"]): (c["correct"], c["n"])
             for c in ar.phrasing_rows(preds)}
    assert cells[("vst", 16, "exist", False)] == (1, 2)
    assert cells[("vst", 16, "exist", True)] == (1, 1)
    assert cells[("vst", 16, "all", True)] == (1, 2)
    assert cells[("vst", 16, "all", False)] == (1, 2)
    assert cells[("full", 2, "now", True)] == cells[("full", 16, "now", True)] == (1, 1)
    table = ar.markdown_phrasing(ar.phrasing_rows(preds))
    assert "| vst | all | 100.0 / - |" not in table
    assert "| vst | exist | - | 50.0 / 100.0 (n=1) |" in table
    # one wording only: nothing to compare, no table
    assert ar.markdown_phrasing(ar.phrasing_rows(preds[:2])) == ""


def test_accuracy_splits_by_pairing_trained_against_held_out() -> None:
    """Counted by hand: questions about no object stay out; each form and the whole set split
    by the pairing of the objects asked about, with the wrong answers that deny the object
    (a right "no" and a wrong colour are not denials)."""
    def p(form, pairing, correct, method="vst", ratio=16, said="red"):
        return {"method": method, "ratio": ratio, "task": "attribute", "form": form,
                "pairing": pairing, "correct": correct, "prediction": said}
    preds = [p("colour_of_shape", "trained", True), p("colour_of_shape", "held_out", False,
                                                      said="None."),
             p("colour_of_shape", "held_out", True), p("count_cuts", None, True),
             p("shape_of_colour", "trained", False), p("colour_of_shape", "held_out", True,
                                                       "full", None),
             p("colour_of_shape", "held_out", False, said="blue"),
             p("still_there", "held_out", False, said="no"),
             p("no_longer_there", "held_out", True, said="no")]
    cells = {(c["method"], c["ratio"], c["form"], c["pairing"]): (c["correct"], c["n"],
                                                                  c["denied"])
             for c in ar.pairing_rows(preds)}
    assert cells[("vst", 16, "colour_of_shape", "held_out")] == (1, 3, 1)
    assert cells[("vst", 16, "still_there", "held_out")] == (0, 1, 1)
    assert cells[("vst", 16, "no_longer_there", "held_out")] == (1, 1, 0)
    assert cells[("vst", 16, "all", "held_out")] == (2, 5, 2)
    assert cells[("vst", 16, "all", "trained")] == (1, 2, 0)
    assert not any(k[2] == "count_cuts" for k in cells)
    assert cells[("full", 16, "colour_of_shape", "held_out")] == (1, 1, 0)
    table = ar.markdown_pairing(ar.pairing_rows(preds))
    assert "| vst | colour_of_shape | 100.0 / 33.3 (1 / 3; 0 / 1) |" in table
    assert "shape_of_colour" not in table  # no held-out question of that form
    assert ar.markdown_pairing(ar.pairing_rows(preds[:1])) == ""


def test_accuracy_splits_by_frame_size() -> None:
    """Counted by hand: each task and the whole set split by the video's frame size, sizes in
    order of height then width; one size gives no table."""
    def p(task, size, correct, method="vst", ratio=16):
        return {"method": method, "ratio": ratio, "task": task, "form": task,
                "frame_size": size, "correct": correct}
    preds = [p("exist", "72x128", True), p("exist", "72x128", False), p("now", "64x64", True),
             p("exist", "128x72", False), p("now", "72x128", True, "full", None)]
    cells = {(c["method"], c["ratio"], c["task"], c["frame_size"]): (c["correct"], c["n"])
             for c in ar.frame_size_rows(preds)}
    assert cells[("vst", 16, "exist", "72x128")] == (1, 2)
    assert cells[("vst", 16, "all", "72x128")] == (1, 2)
    assert cells[("full", 16, "now", "72x128")] == (1, 1)
    table = ar.markdown_frame_sizes(ar.frame_size_rows(preds))
    assert "| method | ratio | task | 64x64 | 72x128 | 128x72 |" in table
    assert "| vst | 16x | exist | - | 50.0 (2) | 0.0 (1) |" in table
    assert ar.markdown_frame_sizes(ar.frame_size_rows(preds[:2])) == ""


def test_existence_splits_by_naming() -> None:
    """Counted by hand: existence questions by answer form and naming; other questions stay
    out; "full" counts at every ratio; no existence question, no table."""
    def p(form, how, correct, method="vst", ratio=16):
        return {"method": method, "ratio": ratio, "task": "exist", "form": form,
                "naming": how, "correct": correct}
    preds = [p("exists_present", "both", True), p("exists_present", "both", False),
             p("exists_absent", "both", True), p("exists_absent", "shape", False),
             p("colour_of_absent", None, True), p("exists_absent", "colour", True, "full", None),
             {**p("exists_present", "shape", True), "ratio": 8}]
    cells = {(c["method"], c["ratio"], c["form"], c["naming"]): (c["correct"], c["n"])
             for c in ar.naming_rows(preds)}
    assert cells[("vst", 16, "exists_present", "both")] == (1, 2)
    assert cells[("vst", 16, "exists_absent", "shape")] == (0, 1)
    assert cells[("full", 8, "exists_absent", "colour")] == cells[
        ("full", 16, "exists_absent", "colour")] == (1, 1)
    assert not any(k[2] == "colour_of_absent" for k in cells)
    table = ar.markdown_naming(ar.naming_rows(preds))
    assert "| vst | 16x | exists_present | 50.0 (2) | - | - |" in table
    assert "| vst | 16x | exists_absent | 100.0 (1) | 0.0 (1) | - |" in table
    assert ar.markdown_naming(ar.naming_rows(preds[4:5])) == ""
