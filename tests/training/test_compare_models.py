"""Pooling evaluation samples per model and pairing questions across models."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest

from training import compare_models
from training.compare_models import (
    compare,
    compare_groups,
    group_table,
    load_answers,
    main,
    markdown_table,
)
from training.significance import paired_differences


def test_docstring_examples() -> None:
    result = doctest.testmod(compare_models)
    assert result.failed == 0 and result.attempted == 11


def _report(path: Path, seed: int, outcomes: dict[tuple[str, int | None], list[bool]],
            model: str = "m.safetensors", **settings) -> Path:
    """An evaluation JSON: outcomes per (method, ratio), one question per entry and video."""
    predictions = [{"video": f"eval-{i}", "method": method, "ratio": ratio,
                    "question": "What was on the sign?", "correct": c}
                   for (method, ratio), cs in outcomes.items() for i, c in enumerate(cs)]
    ratios = sorted({r for _, r in outcomes if r is not None})
    path.write_text(json.dumps({"settings": {"model": model, "model_tensors_sha256": model,
                                             "seed": seed, "n_videos": 4, "ratios": ratios,
                                             "window": 160, **settings},
                                "predictions": predictions}))
    return path


def test_samples_pool_and_models_pair_on_the_same_questions(tmp_path: Path) -> None:
    a = [_report(tmp_path / "a1.json", 1, {("vst", 16): [True] * 4, ("avg_pool", 16): [False] * 4,
                                          ("vst", 2): [False] * 4, ("full", None): [True] * 4},
                 model="a"),
         _report(tmp_path / "a2.json", 2, {("vst", 16): [True, True, False, False],
                                          ("avg_pool", 16): [False] * 4,
                                          ("full", None): [True] * 4}, model="a")]
    b = [_report(tmp_path / "b1.json", 1, {("vst", 16): [False] * 4, ("avg_pool", 16): [False] * 4,
                                          ("full", None): [True, False, True, False]}, model="b"),
         _report(tmp_path / "b2.json", 2, {("vst", 16): [False] * 4,
                                          ("avg_pool", 16): [True] * 4,
                                          ("full", None): [True] * 4}, model="b")]
    result = compare({"a": load_answers(a), "b": load_answers(b)}, resamples=200)
    # the model's name and digest do not split the samples; the 2x answers are left out
    assert result["n"] == {"avg_pool": 8, "full": 8, "vst": 8}
    assert result["accuracy"]["a"] == {"avg_pool": 0.0, "full": 1.0, "vst": 0.75}
    assert result["accuracy"]["b"] == {"avg_pool": 0.5, "full": 0.75, "vst": 0.0}
    assert result["lead"]["a"]["diff"] == pytest.approx(0.75)
    assert result["lead"]["b"]["diff"] == pytest.approx(-0.5)
    for lead in result["lead"].values():
        assert lead["low"] <= lead["diff"] <= lead["high"] and lead["n"] == 8
    vst = result["versus"]["b"]["vst"]
    assert vst["diff"] == pytest.approx(0.75) and vst["low"] <= 0.75 <= vst["high"]
    assert result["versus"]["b"]["full"]["diff"] == pytest.approx(0.25)
    table = markdown_table(result)
    assert "| a | 0.0 | 100.0 | 75.0 | +75.0 (" in table
    assert "| b | 50.0 | 75.0 | 0.0 | -50.0 (" in table


def test_one_sample_gets_the_interval_its_evaluation_wrote(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    outcomes = {key: [bool(x) for x in rng.random(60) < p]
                for key, p in ((("vst", 16), 0.6), (("avg_pool", 16), 0.4), (("full", None), 0.6))}
    path = _report(tmp_path / "a.json", 1, outcomes)
    written = [r for r in paired_differences(json.loads(path.read_text())["predictions"])
               if r["method"] == "avg_pool"]  # what training.evaluate records
    lead = compare({"a": load_answers([path])})["lead"]["a"]
    assert (lead["diff"], lead["low"], lead["high"]) == pytest.approx(
        (written[0]["diff"], written[0]["low"], written[0]["high"]))


def test_questions_pair_by_identity_not_by_position(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    outcomes = {("vst", 16): [bool(x) for x in rng.random(40) < 0.5]}
    a = _report(tmp_path / "a.json", 1, outcomes, model="a")
    shuffled = json.loads(a.read_text())
    shuffled["predictions"].reverse()
    shuffled["settings"]["model_tensors_sha256"] = "b"
    b = tmp_path / "b.json"
    b.write_text(json.dumps(shuffled))
    result = compare({"a": load_answers([a]), "b": load_answers([b])}, resamples=200)
    assert result["versus"]["b"]["vst"] == {"diff": 0.0, "low": 0.0, "high": 0.0}


def test_the_same_text_asked_twice_about_one_video_is_two_questions(tmp_path: Path) -> None:
    def report(name: str, first: bool, second: bool) -> Path:
        rows = [{"video": "v", "method": "vst", "ratio": 16, "question": "Which sign?",
                 "correct": c} for c in (first, second)]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"settings": {"seed": 0, "model_tensors_sha256": name},
                                    "predictions": rows}))
        return path

    result = compare({"a": load_answers([report("a", True, False)]),
                      "b": load_answers([report("b", True, True)])}, resamples=50)
    assert result["n"] == {"vst": 2}
    assert result["versus"]["b"]["vst"]["diff"] == pytest.approx(-0.5)


def test_only_questions_every_model_answered_count(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    a = load_answers([_report(tmp_path / "a.json", 1, {("vst", 16): [True] * 4})])
    b = load_answers([_report(tmp_path / "b.json", 1, {("vst", 16): [False] * 2})])
    result = compare({"a": a, "b": b}, resamples=50)
    assert result["n"] == {"vst": 2}  # eval-2 and eval-3 only a answered
    assert "a: 2 answers to questions not every model was asked are left out" in caplog.text
    other_sample = load_answers([_report(tmp_path / "c.json", 9, {("vst", 16): [True] * 4})])
    with pytest.raises(ValueError, match="no question in common"):
        compare({"a": a, "c": other_sample})
    with pytest.raises(ValueError, match="no models"):
        compare({})


def test_a_sample_given_twice_or_a_file_without_answers_is_refused(tmp_path: Path) -> None:
    one = _report(tmp_path / "one.json", 1, {("vst", 16): [True] * 3})
    with pytest.raises(ValueError, match="same sample given twice"):
        load_answers([one, one])
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"settings": {}, "rows": []}))
    with pytest.raises(ValueError, match="no predictions"):
        load_answers([empty])


def test_unlike_comparisons_are_refused(tmp_path: Path) -> None:
    plain = {("vst", 16): [True] * 3, ("avg_pool", 16): [False] * 3}
    a = load_answers([_report(tmp_path / "a.json", 1, plain, model="a")])
    with pytest.raises(ValueError, match="different window"):
        compare({"a": a, "b": load_answers([_report(tmp_path / "b.json", 1, plain, model="b",
                                                     window=64)])})
    # 64 tokens a frame: 640 raw tokens are the same 10 frames a window as 160 at 16 (a file
    # without frame_tokens is of a 16-token model); 160 at 64 would be 2.5 frames
    wide = load_answers([_report(tmp_path / "w.json", 1, plain, model="w", window=640,
                                 frame_tokens=64)])
    assert compare({"a": a, "w": wide})["accuracy"]["w"]["vst"] == 1.0
    with pytest.raises(ValueError, match="different window"):
        compare({"a": a, "n": load_answers([_report(tmp_path / "n.json", 1, plain, model="n",
                                                     frame_tokens=64)])})
    # a live stream's open interval read raw is another memory than the stored one
    with pytest.raises(ValueError, match="different tail"):
        compare({"a": a, "t": load_answers([_report(tmp_path / "t.json", 1, plain, model="t",
                                                     tail="open")])})
    with pytest.raises(ValueError, match="no answers at 8x"):
        load_answers([tmp_path / "a.json"], ratio=8)
    with pytest.raises(ValueError, match="baseline 'avgpool'"):
        compare({"a": a}, baseline="avgpool")
    with pytest.raises(ValueError, match="baseline 'vst'"):
        compare({"a": a}, baseline="vst")
    other = _report(tmp_path / "other.json", 2, plain, model="someone else")
    with pytest.raises(ValueError, match="different models"):
        load_answers([tmp_path / "a.json", other])
    # one sample's uncompressed answers, given again in the same sample's 2x file
    full = {("full", None): [True] * 3}
    sixteen = _report(tmp_path / "s16.json", 3, {("vst", 16): [True] * 3, **full})
    two = _report(tmp_path / "s2.json", 3, {("vst", 2): [True] * 3, **full})
    with pytest.raises(ValueError, match="same sample given twice"):
        load_answers([sixteen, two])


def test_cli_prints_and_writes_the_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _report(tmp_path / "a.json", 1, {("vst", 16): [True] * 3, ("avg_pool", 16): [False] * 3})
    b = _report(tmp_path / "b.json", 1, {("vst", 16): [True] * 3, ("avg_pool", 16): [True] * 3})
    out = tmp_path / "t.md"
    main(["--model", f"new={a}", "--model", f"old={b}", "--markdown", str(out)])
    printed = capsys.readouterr().out
    assert printed == out.read_text() and "| old | 100.0 | 100.0 | +0.0" in printed
    by_video = tmp_path / "v.md"
    main(["--model", f"new={a}", "--model", f"old={b}", "--by-video",
          "--markdown", str(by_video)])
    assert by_video.read_text() == out.read_text()  # one question per video: the same draws
    with pytest.raises(SystemExit):
        main(["--model", f"x={a}", "--model", f"x={b}"])
    with pytest.raises(SystemExit):
        main(["--model", str(a)])
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    no_fields = tmp_path / "no_fields.json"
    no_fields.write_text(json.dumps({"predictions": [{"ratio": 16, "method": "vst"}]}))
    # absent; not JSON; JSON of another shape; predictions without their fields
    for bad in (tmp_path / "missing.json", tmp_path / "t.md", listed, no_fields):
        with pytest.raises(SystemExit):
            main(["--model", f"new={bad}"])
        assert "Error" in capsys.readouterr().err


def test_a_world_field_added_later_and_left_off_is_the_same_sample(tmp_path: Path) -> None:
    """Evaluations recorded before `WorldConfig.camera` existed pair with later ones that write
    it as None (off); a camera that is on is another sample."""
    world = {"num_frames": 24, "max_objects": 3}
    old = _report(tmp_path / "old.json", 1, {("vst", 16): [True] * 4}, model="a", world=world)
    new = _report(tmp_path / "new.json", 1, {("vst", 16): [False] * 4}, model="b",
                  world={**world, "camera": None})
    result = compare({"a": load_answers([old]), "b": load_answers([new])}, resamples=50)
    assert result["n"] == {"vst": 4}
    seen = _report(tmp_path / "seen.json", 1, {("vst", 16): [False] * 4}, model="c",
                   world={**world, "camera": {"noise": [0, 10]}})
    with pytest.raises(ValueError, match="no question in common"):
        compare({"a": load_answers([old]), "c": load_answers([seen])}, resamples=50)


def test_a_world_field_added_later_at_its_default_is_the_same_sample(tmp_path: Path) -> None:
    """`WorldConfig.offline_prob` came after the shipped model's evaluations: written at its
    default (0.0, no outage) it is the same world; set, it is another sample."""
    world = {"num_frames": 24, "max_objects": 3}
    old = _report(tmp_path / "old.json", 1, {("vst", 16): [True] * 4}, model="a", world=world)
    new = _report(tmp_path / "new.json", 1, {("vst", 16): [False] * 4}, model="b",
                  world={**world, "offline_prob": 0.0, "offline_frames": [5, 8], "sizes": None})
    result = compare({"a": load_answers([old]), "b": load_answers([new])}, resamples=50)
    assert result["n"] == {"vst": 4}
    offline = _report(tmp_path / "offline.json", 1, {("vst", 16): [False] * 4}, model="c",
                      world={**world, "offline_prob": 1.0})
    with pytest.raises(ValueError, match="no question in common"):
        compare({"a": load_answers([old]), "c": load_answers([offline])}, resamples=50)


def test_a_probe_setting_added_later_at_its_default_is_the_same_sample(tmp_path: Path) -> None:
    """existence_probe's ``frames`` came after the shipped model's stills file: written as 1
    (stills) it is the same sample; videos of 24 frames are another."""
    def existence(name: str, correct: bool, **extra: int) -> Path:
        report = {"settings": {"model_tensors_sha256": name, "n": 2, "questions": 1,
                               "seed": 0, "split": "eval", **extra},
                  "records": [{"still": i, "question": "Can you see a star?", "method": "vst",
                               "ratio": 16, "correct": correct} for i in range(2)]}
        (path := tmp_path / f"{name}.json").write_text(json.dumps(report))
        return path

    old = load_answers([existence("old", True)])
    result = compare({"old": old, "new": load_answers([existence("new", False, frames=1)])},
                     baseline="full", resamples=50)
    assert result["n"] == {"vst": 2}
    assert result["versus"]["new"]["vst"]["diff"] == pytest.approx(1.0)  # old - new
    videos = load_answers([existence("videos", False, frames=24)])
    with pytest.raises(ValueError, match="no question in common"):
        compare({"old": old, "videos": videos}, baseline="full", resamples=50)


def test_stills_probes_pair_by_still_and_question(tmp_path: Path) -> None:
    """A stills probe's file is a sample like an evaluation's: each still a video, each
    question (a reading probe's sign text) paired across models, ``right`` or ``correct``."""
    from training import binding_probe, existence_probe

    binding_probe.main(["--model", "tiny-random", "--n", "2", "--ratios", "2", "--methods",
                        "vst,full", "--device", "cpu", "--out", str(tmp_path), "--name", "a"])
    report = json.loads((tmp_path / "a.json").read_text())
    records = report["records"]
    assert len(records) == 2 * 2 * 2  # stills x questions x methods
    flipped = [{**r, "right": not r["right"]} for r in records]
    other = {**report, "records": flipped,
             "settings": {**report["settings"], "model_tensors_sha256": "other"}}
    (tmp_path / "b.json").write_text(json.dumps(other))
    result = compare({"a": load_answers([tmp_path / "a.json"], ratio=2),
                      "b": load_answers([tmp_path / "b.json"], ratio=2)},
                     baseline="full", resamples=200)
    assert result["n"] == {"full": 4, "vst": 4}
    right = sum(r["right"] for r in records if r["method"] == "vst") / 4
    assert result["accuracy"]["a"]["vst"] == right and result["accuracy"]["b"]["vst"] == 1 - right
    assert result["versus"]["b"]["vst"]["diff"] == pytest.approx(2 * right - 1)

    existence_probe.main(["--model", "tiny-random", "--n", "2", "--questions", "1", "--ratios",
                          "2", "--methods", "vst", "--device", "cpu", "--out", str(tmp_path),
                          "--name", "e"])
    exist = load_answers([tmp_path / "e.json"], ratio=2)
    kept = json.loads((tmp_path / "e.json").read_text())["records"]
    assert sorted(exist.correct.values()) == sorted(r["correct"] for r in kept)
    assert set(exist.kinds.values()) == {("e", "e")}  # a probe's questions: one kind, its file's

    # a reading probe names a question by its sign's text
    reading = {"settings": {"model_tensors_sha256": "r", "n": 2, "seed": 0, "ratios": [16]},
               "predictions": [{"still": i, "text": t, "kind": "number", "method": "vst",
                                "ratio": 16, "answer": t, "prediction": "7", "correct": t == "7"}
                               for i, t in enumerate(["7", "12"])]}
    (tmp_path / "r.json").write_text(json.dumps(reading))
    read = load_answers([tmp_path / "r.json"])
    assert {(q.video, q.text): c for q, c in read.correct.items()} == {
        ("still 0", "7"): True, ("still 1", "12"): False}
    broken = {**reading, "predictions": [{"still": 0, "method": "vst", "ratio": 16}]}
    (tmp_path / "x.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="a still's answer has no"):
        load_answers([tmp_path / "x.json"])


def test_files_of_uncompressed_answers_only_pair(tmp_path: Path) -> None:
    """A raw run's probe answers from the uncompressed memory only: it has no ratio to miss,
    and two such models are set against each other on ``full``."""
    a = _report(tmp_path / "a.json", 1, {("full", None): [True, True, False, True]}, model="a")
    b = _report(tmp_path / "b.json", 1, {("full", None): [False, True, False, False]}, model="b")
    result = compare({"a": load_answers([a]), "b": load_answers([b])}, resamples=200)
    assert result["n"] == {"full": 4} and result["lead"] == {}
    assert result["versus"]["b"]["full"]["diff"] == pytest.approx(0.5)
    table = markdown_table(result)
    assert "a - model, full |" in table and "| b | 25.0 | - | +50.0 (" in table
    # a file that compressed, but not at the ratio asked, is still refused
    two = _report(tmp_path / "two.json", 1, {("vst", 2): [True], ("full", None): [True]})
    with pytest.raises(ValueError, match=r"no answers at 16x \(it has \[2\]\)"):
        load_answers([two])


def _formed(path: Path, model: str, right: dict[tuple[str, str], list[bool]]) -> Path:
    """An evaluation JSON whose questions carry their task and form: ``right`` per (task,
    form), one question per entry, each about its own video."""
    predictions = [{"video": f"eval-{task}-{form}-{i}", "method": "vst", "ratio": 16,
                    "task": task, "form": form, "question": f"{form}?", "correct": c}
                   for (task, form), cs in right.items() for i, c in enumerate(cs)]
    path.write_text(json.dumps({"settings": {"model_tensors_sha256": model, "seed": 2,
                                             "ratios": [16], "window": 160},
                                "predictions": predictions}))
    return path


def test_groups_pair_within_each_task_and_form(tmp_path: Path) -> None:
    """Per form, the counts are the files' own and the differences are the groups' (a model
    that gains "no" and loses "which came first" ties on the total, not within them)."""
    a = _formed(tmp_path / "a.json", "a", {("exist", "absent"): [True] * 4,
                                           ("exist", "present"): [True, False],
                                           ("order", "first"): [False] * 4})
    b = _formed(tmp_path / "b.json", "b", {("exist", "absent"): [False] * 4,
                                           ("exist", "present"): [True, True],
                                           ("order", "first"): [True] * 4})
    models = {"a": load_answers([a]), "b": load_answers([b])}
    assert compare(models, baseline="full", resamples=50)["accuracy"]["a"]["vst"] == 0.5
    forms = compare_groups(models, "form", resamples=200)
    assert [(r["group"], r["n"], r["correct"]) for r in forms] == [
        ("exist/absent", 4, {"a": 4, "b": 0}), ("exist/present", 2, {"a": 1, "b": 2}),
        ("order/first", 4, {"a": 0, "b": 4})]
    assert [r["versus"]["b"]["diff"] for r in forms] == pytest.approx([1.0, -0.5, -1.0])
    tasks = compare_groups(models, "task", resamples=200)
    assert [(r["group"], r["correct"]) for r in tasks] == [("exist", {"a": 5, "b": 2}),
                                                          ("order", {"a": 0, "b": 4})]
    exist = tasks[0]["versus"]["b"]
    assert exist["diff"] == pytest.approx(0.5) and exist["low"] <= 0.5 <= exist["high"]
    table = group_table(forms, "form")
    assert table.splitlines()[0] == "| form | n | a, vst | b, vst | a - b |"
    assert "| exist/absent | 4 | 4 | 0 | +100.0 (+100.0 ... +100.0) |" in table
    with pytest.raises(ValueError, match="share no answer of 'avg_pool'"):
        compare_groups(models, "form", method="avg_pool")


def test_cli_adds_the_group_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _formed(tmp_path / "a.json", "a", {("count", "objects"): [True, True]})
    b = _formed(tmp_path / "b.json", "b", {("count", "objects"): [True, False]})
    out = tmp_path / "t.md"
    main(["--model", f"a={a}", "--model", f"b={b}", "--baseline", "full", "--by", "task",
          "--markdown", str(out)])
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    assert "| a | 100.0 |" in printed and "| count | 2 | 2 | 1 | +50.0 (" in printed
    with pytest.raises(SystemExit):
        main(["--model", f"a={a}", "--by", "video"])
