"""The evaluation recipe on the tiny random model: memories at equal budgets, scoring, NIAH.

- Budgets: every method's memory holds the tokens it claims -- ``vst`` the VSTs of its
  windows' layouts, ``avg_pool`` the same count (per-frame pooling when r divides T),
  ``last_n`` the most whole frames under that count, ``full`` every raw token.
- What is kept: the pooled tokens are per-frame means (against a slow reference), and the raw
  memories (``full``, ``avg_pool``) equal one causal forward over [prefix | tokens].
- The product's path: the ``vst`` memory and its answers are a `VideoMemory`'s fed the same
  frames (the same intervals, K/V and greedy answers).
- Scoring plumbing: an answer function returning the ground truth scores 1.0 everywhere, one
  returning garbage 0.0; real greedy runs give well-formed, deterministic rows.
- NIAH: the sign shows exactly on the frames of the requested depth (found in the rendered
  pixels), the haystack is the same at every depth, and a 64-frame run goes end to end.
"""

from __future__ import annotations

import doctest
import importlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from streamvxl.config import MemoryConfig
from streamvxl.intervals import BoundaryConfig
from streamvxl.model.cache import ConcatCache
from streamvxl.model.layout import split_windows, window_layout
from streamvxl.prompt import PromptTemplate
from streamvxl.runtime import Runtime, RuntimeConfig
from streamvxl.testing import make_tokenizer, random_videoxl
from streamvxl.world import HELD_OUT_COMBOS, VIDEO_TASKS, WorldConfig
from streamvxl.world.render import sign_image
from training import evaluate as ev
from training import niah as nh
from training.baselines import (
    METHODS,
    build_memory,
    encode_video,
    pool_like_vsts,
    vst_token_count,
)

FRAMES, WINDOW = 12, 16
BOUNDARY = BoundaryConfig(window=1, min_frames=2, max_frames=6)
TINY = {"n_videos": 2, "frames": FRAMES, "ratios": (2, 4), "boundary": BOUNDARY,
        "window": WINDOW, "max_new_tokens": 4, "seed": 3}


@pytest.fixture(scope="module")
def model():
    return random_videoxl(0)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def world(model) -> WorldConfig:
    return WorldConfig(num_frames=FRAMES, height=model.image_size, width=model.image_size,
                       max_objects=2)


@pytest.fixture(scope="module")
def runtime(model, tokenizer) -> Runtime:
    return Runtime(model, tokenizer, config=RuntimeConfig(cpu_threads=0))


@pytest.fixture(scope="module")
def settings(runtime):
    return runtime.settings(MemoryConfig(window=WINDOW, boundary=BOUNDARY))


@pytest.fixture(scope="module")
def video(runtime, world):
    sample = ev.eval_samples(world, 1, seed=1)[0]
    return encode_video(runtime, [sample.frames[:5], sample.frames[5:]], BOUNDARY, name="v")


@pytest.fixture(scope="module")
def prefix(tokenizer, model) -> torch.Tensor:
    return ev.token_ids(tokenizer, PromptTemplate().prefix, model.config.llm.vocab_size)


def test_the_sink_is_the_streams_prompt(settings, prefix) -> None:
    assert settings.prefix_ids == tuple(prefix.tolist())


def test_docstring_examples() -> None:
    for name in ("baselines", "evaluate", "niah"):
        module = importlib.import_module(f"training.{name}")
        assert doctest.testmod(module).failed == 0, name


# ------------------------------------------------------------------------------------------
# Memories at equal budgets


def _layout_count(video, ratio: int) -> int:
    t = video.tokens_per_frame
    return sum(window_layout(e - s, ratio).num_vst
               for iv in video.intervals for s, e in split_windows(iv.num_frames * t, WINDOW))


def test_intervals_tile_the_video(video) -> None:
    assert video.num_frames == FRAMES and len(video.intervals) >= 2
    covered = [f for iv in video.intervals for f in range(iv.start, iv.end + 1)]
    assert covered == list(range(FRAMES))


@pytest.mark.parametrize("ratio", [2, 4, 3])
def test_memories_hold_the_tokens_they_claim(runtime, settings, video, prefix,
                                              ratio: int) -> None:
    n, t = video.num_frames, video.tokens_per_frame
    budget = _layout_count(video, ratio)
    assert vst_token_count(video, ratio, WINDOW) == budget
    got = {}
    for method in METHODS:
        mem = build_memory(runtime, settings, video, method, ratio)
        assert mem.memory_tokens == mem.store.interval_tokens()  # what is really stored
        assert mem.sink_tokens == prefix.numel() == mem.store.sink_tokens
        got[method] = mem
    assert got["vst"].memory_tokens == budget
    assert got["avg_pool"].memory_tokens == budget  # equal memory, whatever r
    if t % ratio == 0:
        assert budget == n * t // ratio  # the per-frame count
    last = got["last_n"]
    assert last.memory_tokens == last.frames_kept * t <= budget
    assert (last.frames_kept + 1) * t > budget or last.frames_kept == n
    assert got["full"].memory_tokens == n * t and got["full"].ratio is None
    assert build_memory(runtime, settings, video, "vst", ratio).memory_tokens == budget


def test_pooling_is_the_per_frame_mean_when_r_divides_t() -> None:
    n, t, c, r = 6, 8, 5, 4
    tokens = torch.randn(n, t, c, generator=torch.Generator().manual_seed(0))
    reference = tokens.reshape(n, t // r, r, c).mean(2).reshape(-1, c)  # (N*T/r, C)
    got = pool_like_vsts(tokens.reshape(-1, c), r, window=2 * t)
    torch.testing.assert_close(got, reference)


@pytest.mark.parametrize("ratio,remainder", [(3, "summarize"), (5, "drop"), (32, "summarize")])
def test_pooling_matches_the_vst_count(ratio: int, remainder: str) -> None:
    tokens = torch.randn(37, 4, generator=torch.Generator().manual_seed(0))
    n_vst = sum(window_layout(e - s, ratio, remainder).num_vst for s, e in split_windows(37, 16))
    got = pool_like_vsts(tokens, ratio, 16, remainder)
    assert got.shape == (n_vst, 4)
    # the first group: r tokens, or the whole first window when r exceeds it
    torch.testing.assert_close(got[0], tokens[:min(ratio, 16)].mean(0))


def _one_forward(model, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Pre-RoPE keys (L, 1, G, P+n, D) of one causal forward over [prefix | tokens (n, C)]."""
    embeds = torch.cat((model.embed_ids(prefix[None]), tokens[None]), dim=1)  # (1, P+n, C)
    cache = ConcatCache(None, None, model.config.llm.rope_theta)
    _, kv = model.model.forward_chunk(embeds, 0, cache, need_hidden=False)
    return kv.keys


@pytest.mark.parametrize("method", ["full", "avg_pool"])
def test_raw_memories_equal_one_causal_forward(model, runtime, settings, video, prefix,
                                               method: str) -> None:
    memory = build_memory(runtime, settings, video, method, 2)
    c = video.tokens.shape[-1]
    if method == "full":
        tokens = video.tokens.reshape(-1, c)  # (N*T, C)
    else:
        tokens = torch.cat([pool_like_vsts(video.tokens[iv.start:iv.end + 1].reshape(-1, c), 2,
                                           WINDOW) for iv in video.intervals])
    with torch.no_grad():
        want = _one_forward(model, prefix, tokens)
    torch.testing.assert_close(memory.store.keys(), want, rtol=1e-4, atol=1e-5)


def test_bad_requests_are_refused(model, runtime, settings, video) -> None:
    with pytest.raises(ValueError, match="needs a ratio"):
        build_memory(runtime, settings, video, "vst", None)
    with pytest.raises(ValueError, match="unknown method"):
        build_memory(runtime, settings, video, "mean", 2)
    with pytest.raises(ValueError, match="methods"):
        ev.evaluate(model, make_tokenizer(), methods=("vst", "oracle"), n_videos=1)


# ------------------------------------------------------------------------------------------
# evaluate()


def test_eval_set_is_held_out(world) -> None:
    samples = ev.eval_samples(world, 12, seed=0)
    qas = [qa for s in samples for qa in s.qa]
    # a world without outages asks none about them (the outage test below asks them)
    assert {qa.task for qa in qas} == set(VIDEO_TASKS) - {"offline"}
    assert any(qa.novel_phrasing for qa in qas)
    assert any(o.combo in HELD_OUT_COMBOS for s in samples for o in s.episodes[0].objects)
    again = ev.eval_samples(world, 12, seed=0)
    assert [qa.question for s in again for qa in s.qa] == [qa.question for qa in qas]


def test_eval_set_with_a_held_out_grammar_keeps_its_videos(world) -> None:
    """--held-out grammar asks the same videos; the first five tasks' novel questions come
    from the held-out grammar instead of the two held-out templates."""
    from streamvxl.world.questions import FORMS

    templates = ev.eval_samples(world, 12, seed=0)
    grammar = ev.eval_samples(world, 12, seed=0, held_out="grammar")
    for a, b in zip(templates, grammar, strict=True):
        assert a.episodes == b.episodes and np.array_equal(a.frames, b.frames)
    novel = [qa for s in grammar for qa in s.qa
             if qa.novel_phrasing and not FORMS[qa.form].grammar]
    assert novel and all(qa.template not in FORMS[qa.form].held_out for qa in novel)


def test_eval_set_with_balanced_existence_naming_keeps_its_videos(world) -> None:
    """--exist-naming balanced asks the same videos and the first five tasks' same questions;
    its absent things are named by one part as often as present ones are."""
    from streamvxl.world.questions import naming

    recorded = ev.eval_samples(world, 40, seed=0, tasks=("attribute", "exist"))
    balanced = ev.eval_samples(world, 40, seed=0, tasks=("attribute", "exist"),
                               exist_naming="balanced")
    namings = {"recorded": Counter(), "balanced": Counter()}
    for name, samples in (("recorded", recorded), ("balanced", balanced)):
        for s in samples:
            namings[name].update(naming(qa) for qa in s.qa if qa.form == "exists_absent")
    for a, b in zip(recorded, balanced, strict=True):
        assert a.episodes == b.episodes and np.array_equal(a.frames, b.frames)
        assert [q for q in a.qa if q.task == "attribute"] == [
            q for q in b.qa if q.task == "attribute"]
    one_part = {k: (c["shape"] + c["colour"]) / sum(c.values()) for k, c in namings.items()}
    assert one_part["recorded"] < 0.25 < 0.45 < one_part["balanced"], namings


def _check_rows(rows, ratios) -> None:
    keys = {"method", "ratio", "task", "n", "correct", "accuracy", "memory_tokens",
            "frames_kept"}
    assert all(set(r) == keys for r in rows)
    assert {(r["method"], r["ratio"]) for r in rows} == {(m, q) for m in METHODS for q in ratios}
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["accuracy"] == r["correct"] / r["n"]
    by = {(r["method"], r["ratio"], r["task"]): r for r in rows}
    for m in METHODS:
        for q in ratios:
            tasks = [r for r in rows if r["method"] == m and r["ratio"] == q and r["task"] != "all"]
            assert by[(m, q, "all")]["n"] == sum(r["n"] for r in tasks)
            assert by[(m, q, "all")]["correct"] == sum(r["correct"] for r in tasks)


def test_evaluate_rows_are_well_formed_and_deterministic(model, tokenizer) -> None:
    preds_a: list[dict] = []
    rows = ev.evaluate(model, tokenizer, predictions=preds_a, **TINY)
    _check_rows(rows, TINY["ratios"])
    by = {(r["method"], r["ratio"], r["task"]): r for r in rows}
    assert by[("full", 2, "all")]["memory_tokens"] == FRAMES * model.tokens_per_frame
    assert by[("vst", 4, "all")]["memory_tokens"] == by[("avg_pool", 4, "all")]["memory_tokens"]
    n_questions = by[("vst", 2, "all")]["n"]
    assert len(preds_a) == n_questions * (2 * 3 + 1)  # 3 methods x 2 ratios + full once
    preds_b: list[dict] = []
    assert ev.evaluate(model, tokenizer, predictions=preds_b, **TINY) == rows
    assert preds_b == preds_a


def _truth(world) -> dict[tuple[str, str], str]:
    samples = ev.eval_samples(world, TINY["n_videos"], TINY["seed"])
    return {(f"eval-{i}", qa.question): qa.answer for i, s in enumerate(samples) for qa in s.qa}


@pytest.mark.parametrize("oracle", [True, False])
def test_scoring_plumbing(model, tokenizer, world, monkeypatch, oracle: bool) -> None:
    truth = _truth(world)
    asked = []

    def fake(memory, question, question_ids, decoding):
        asked.append((memory.video.name, question))
        return truth[(memory.video.name, question)] if oracle else "zzz qqq"

    monkeypatch.setattr(ev, "answer_question", fake)
    rows = ev.evaluate(model, tokenizer, world=world, **TINY)
    _check_rows(rows, TINY["ratios"])
    assert {r["accuracy"] for r in rows} == {1.0 if oracle else 0.0}
    assert set(asked) == set(truth)


def test_cli_writes_json_and_markdown(tmp_path: Path) -> None:
    written = ev.main(["--model", "tiny-random", "--out", str(tmp_path), "--n-videos", "1",
                       "--frames", "8", "--ratios", "2", "--methods", "vst,last_n",
                       "--tasks", "count", "--window", "16", "--max-new-tokens", "2",
                       "--device", "cpu",
                       "--boundary", '{"window": 1, "min_frames": 2, "max_frames": 4}'])
    assert (tmp_path / "eval.json") in written and (tmp_path / "eval.md").is_file()
    data = json.loads((tmp_path / "eval.json").read_text())
    assert {r["method"] for r in data["rows"]} == {"vst", "last_n"}
    assert data["settings"]["split"] == "eval" and data["predictions"]
    # what a window of raw tokens means in frames (training.compare_models pairs by it)
    assert data["settings"]["frame_tokens"] == ev.load_model_folder("tiny-random", None,
                                                                   "cpu")[0].tokens_per_frame


def test_training_settings_come_from_the_checkpoint(tmp_path: Path) -> None:
    step = tmp_path / "step_0000010"
    (step / "model").mkdir(parents=True)
    assert ev.training_settings(step / "model") == {}
    cfg = {"frames": 12, "world": {"max_objects": 3}, "boundary": {"window": 1}, "window": 16,
           "lr": 1e-3}
    (step / "trainer.json").write_text(json.dumps({"config": cfg, "step": 10}))
    assert ev.training_settings(step / "model") == {k: cfg[k] for k in
                                                    ("frames", "world", "boundary", "window")}


# ------------------------------------------------------------------------------------------
# Needle in a haystack


def _sign_frames(hay) -> list[int]:
    frames = np.concatenate(list(hay.chunks()))  # (F, H, W, 3)
    assert len(frames) == hay.num_frames
    g = hay.needle
    img = sign_image(g)
    h, w = img.shape[:2]
    return [t for t in range(len(frames))
            if np.array_equal(frames[t, g.y:g.y + h, g.x:g.x + w], img)]


@pytest.mark.parametrize("depth,segment", [(0.0, 32), (0.37, 32), (1.0, 32), (0.5, 8)])
def test_needle_sits_at_the_requested_depth(depth: float, segment: int) -> None:
    n, k = 64, 3
    hay = nh.make_haystack(n, depth, seed=5, height=56, width=56, segment_frames=segment,
                           needle_frames=k)
    start = round(depth * (n - k))
    assert hay.needle_span == (start, start + k)
    assert _sign_frames(hay) == list(range(start, start + k))  # in the pixels, nowhere else
    assert all(len(c) <= segment for c in hay.chunks())  # rendered one segment at a time
    qa = hay.qa
    assert qa.task == "needle" and qa.evidence == hay.needle_span
    assert qa.question in ("What word was written on the sign?",
                           "What number was written on the sign?")


def test_haystack_is_the_same_at_every_depth() -> None:
    a = nh.make_haystack(64, 0.1, seed=2, height=56, width=56, segment_frames=8)
    b = nh.make_haystack(64, 0.9, seed=2, height=56, width=56, segment_frames=8)
    assert a.needle.text == b.needle.text and a.needle_span != b.needle_span
    assert [s.scenes for s in a.segments] == [s.scenes for s in b.segments]
    ends = [*a.offsets[1:], a.num_frames]
    spans = (a.needle_span, b.needle_span)
    away = [i for i, (s, e) in enumerate(zip(a.offsets, ends, strict=True))
            if all(e <= t_in or s >= t_out for t_in, t_out in spans)]
    assert len(away) == len(a.segments) - 2
    for i in away:  # segments away from both needles are identical
        assert a.segments[i] == b.segments[i]


@pytest.mark.parametrize(("world", "match"), [
    ({"sizes": [[64, 64]]}, "frame size as height and width"),
    ({"rates": [1, 2]}, "frame rate as fps"),
    ({"fps": 1.0}, r"\['fps'\] are the haystack's own"),
    ({"height": 32, "num_frames": 8}, r"\['height', 'num_frames'\]"),
])
def test_haystack_refuses_a_world_that_sets_its_own_camera(world, match) -> None:
    with pytest.raises(ValueError, match=match):
        nh.make_haystack(64, 0.5, seed=0, world=world)


def test_niah_end_to_end_at_64_frames(model, tokenizer, monkeypatch) -> None:
    kw = {"frame_counts": (64,), "depths": (0.0, 0.5), "ratio": 4, "window": WINDOW,
          "boundary": BOUNDARY, "methods": ("vst", "last_n", "full"), "max_new_tokens": 4}
    preds: list[dict] = []
    rows = nh.niah(model, tokenizer, predictions=preds, **kw)
    assert len(rows) == 6 and len(preds) == 6
    for r in rows:
        assert r["n"] == 1 and 0.0 <= r["accuracy"] <= 1.0
    by = {(r["method"], r["depth"]): r for r in rows}
    assert by[("full", 0.5)]["memory_tokens"] == 64 * model.tokens_per_frame
    assert by[("last_n", 0.5)]["memory_tokens"] <= by[("vst", 0.5)]["memory_tokens"]
    grid = nh.markdown_grid(rows)
    assert "## vst at 4x" in grid and "| 0.5 |" in grid

    answers = {d: nh.make_haystack(64, d, seed=(0, 0), height=56, width=56).qa.answer
               for d in (0.0, 0.5)}
    monkeypatch.setattr(nh, "answer_question",
                        lambda memory, q, ids, dec: answers[float(memory.video.name.split("-")[2])])
    oracle = nh.niah(model, tokenizer, **kw)
    assert {r["accuracy"] for r in oracle} == {1.0}


def test_needle_grid_split_by_sign_kind() -> None:
    def pred(method, frames, answer, correct):
        return {"method": method, "frames": frames, "answer": answer, "correct": correct}

    preds = [pred("vst", 64, "657", False), pred("vst", 64, "cat", True),
             pred("vst", 64, "7", True), pred("vst", 128, "door", False),
             pred("avg_pool", 64, "cat", False)]
    cells = {(k["method"], k["frames"], k["kind"]): (k["correct"], k["n"])
             for k in nh.sign_kind_rows(preds)}
    assert cells == {("vst", 64, "number"): (1, 2), ("vst", 64, "word"): (1, 1),
                     ("vst", 128, "word"): (0, 1), ("avg_pool", 64, "word"): (0, 1)}
    rows = [{"method": "vst", "ratio": 16, "frames": f, "depth": 0.0, "n": 1, "correct": 0,
             "accuracy": 0.0, "memory_tokens": 1.0} for f in (64, 128)]
    grid = nh.markdown_grid(rows, kinds=nh.sign_kind_rows(preds))
    assert "| vst, word | 1 / 1 | 0 / 1 |" in grid
    assert "| vst, number | 1 / 2 | - |" in grid
    assert "| avg_pool, word | 0 / 1 | - |" in grid and "avg_pool, number" not in grid


def test_cli_records_a_balanced_existence_draw(tmp_path: Path) -> None:
    common = ["--model", "tiny-random", "--out", str(tmp_path), "--n-videos", "3", "--frames",
              "8", "--ratios", "2", "--methods", "vst", "--tasks", "exist", "--window", "16",
              "--max-new-tokens", "2", "--device", "cpu", "--questions-per-task", "3",
              "--boundary", '{"window": 1, "min_frames": 2, "max_frames": 4}']
    ev.main(common + ["--name", "recorded"])
    ev.main(common + ["--name", "balanced", "--exist-naming", "balanced"])
    recorded, balanced = (json.loads((tmp_path / f"{n}.json").read_text())
                          for n in ("recorded", "balanced"))
    assert "exist_naming" not in recorded["settings"]
    assert balanced["settings"]["exist_naming"] == "balanced"
    for result in (recorded, balanced):
        assert {p["naming"] for p in result["predictions"]
                if p["form"] in ("exists_present", "exists_absent")} <= {"both", "shape", "colour"}
    assert "existence by naming" in (tmp_path / "balanced.md").read_text()


def test_cli_fits_frames_as_asked_and_records_it(tmp_path: Path, monkeypatch) -> None:
    from streamvxl.preprocess import Preprocessor

    fits: list[str] = []
    one = Preprocessor._one
    monkeypatch.setattr(Preprocessor, "_one", lambda self, frame: fits.append(self.fit)
                        or one(self, frame))
    common = ["--model", "tiny-random", "--out", str(tmp_path), "--n-videos", "2", "--frames",
              "8", "--ratios", "2", "--methods", "vst", "--tasks", "exist", "--window", "16",
              "--max-new-tokens", "2", "--device", "cpu", "--world",
              '{"sizes": [[40, 40], [40, 72]]}',
              "--boundary", '{"window": 1, "min_frames": 2, "max_frames": 4}']
    ev.main(common + ["--name", "crop"])
    assert fits and set(fits) == {"crop"}
    fits.clear()
    ev.main(common + ["--name", "pad", "--fit", "pad"])
    assert fits and set(fits) == {"pad"}
    crop, pad = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("crop", "pad"))
    assert "fit" not in crop["settings"] and pad["settings"]["fit"] == "pad"
    assert {p["frame_size"] for p in crop["predictions"]} == {"40x40", "40x72"}
    # the same questions: pairable by training.compare_models
    assert [(p["video"], p["question"]) for p in crop["predictions"]] == [
        (p["video"], p["question"]) for p in pad["predictions"]]


def test_a_video_with_an_outage_is_asked_with_the_memorys_note(model, tokenizer,
                                                               monkeypatch) -> None:
    """An outage's frames never reach the model, and every question about that video starts
    with the note a `VideoMemory` fed the same frames would give (the gap recomputed here from
    the episode, not by `streamvxl.gaps`)."""
    from streamvxl.frames import Gap

    world = WorldConfig(num_frames=24, height=model.image_size, width=model.image_size,
                        max_objects=2, offline_prob=1.0)
    tasks = ("offline", "attribute")
    samples = ev.eval_samples(world, 6, seed=3, tasks=tasks)
    asked: dict[tuple[str, str], list[int]] = {}

    def fake(memory, question, question_ids, decoding):
        asked[(memory.video.name, question)] = question_ids.tolist()
        return "no"

    monkeypatch.setattr(ev, "answer_question", fake)
    ev.evaluate(model, tokenizer, world=world, n_videos=6, seed=3, ratios=(2,),
                methods=("vst",), tasks=tasks, boundary=BOUNDARY, window=WINDOW,
                max_new_tokens=2)
    outages = 0
    for i, sample in enumerate(samples):
        ep = sample.episodes[0]
        gaps = []
        if ep.offline is not None:
            a, b = ep.offline
            gaps = [Gap((a - 1) / world.fps, b / world.fps, "no frames came")]
            assert len(sample.frames) == ep.num_frames - (b - a)
            outages += 1
        for qa in sample.qa:
            text = PromptTemplate().format_question(qa.question, gaps)
            assert asked[(f"eval-{i}", qa.question)] == tokenizer(
                text, add_special_tokens=False)["input_ids"]
    assert outages >= 2 and len(asked) >= 8


def test_the_vst_memory_and_answers_are_a_video_memorys(model, tokenizer, world) -> None:
    """What the evaluation scores as ``vst`` is the product's path: a `VideoMemory` fed the same
    frames, asked the same questions, holds the same intervals and K/V and answers the same."""
    from streamvxl import VideoMemory

    sample = ev.eval_samples(world, 1, seed=5, questions_per_task=2)[0]
    answering = ev.answering(model, tokenizer, ("vst",), preprocess=None, device=None,
                             prompt=None, boundary=BOUNDARY, window=WINDOW, max_new_tokens=6)
    runtime = answering.runtime
    video = encode_video(runtime, [sample.frames], BOUNDARY, name="v")
    memory = build_memory(runtime, answering.settings, video, "vst", 4)
    mem = VideoMemory.on(runtime, MemoryConfig(ratio=4, window=WINDOW, boundary=BOUNDARY),
                         background=False)
    try:
        mem.extend(list(sample.frames), timestamps=[float(t) for t in video.timestamps])
        mem.flush()
        store = mem.state.store
        assert [(r.frame_start, r.frame_end) for r in store.records] == \
            [(i.start, i.end) for i in video.intervals]
        torch.testing.assert_close(store.keys(), memory.store.keys())
        torch.testing.assert_close(store.values(), memory.store.values())
        assert len(sample.qa) >= 4
        for qa in sample.qa:
            ids = ev.question_ids(answering, qa.question)
            scored = ev.answer_question(memory, qa.question, ids, answering.decoding)
            assert mem.ask(qa.question, max_new_tokens=6).text == scored
    finally:
        mem.close()


def test_an_open_tail_is_what_a_live_video_memory_is_asked_from(model, tokenizer,
                                                                world) -> None:
    """``open_tail`` is the product's live path: a `VideoMemory` fed the same frames and not
    flushed stores the same intervals but the last, holds that one open, raw, and answers the
    same as the evaluation's memory with its last interval read raw."""
    from streamvxl import VideoMemory

    sample = ev.eval_samples(world, 1, seed=5, questions_per_task=2)[0]
    frames = sample.frames[:10]  # 6 + 4: the second interval is still open at the last frame
    answering = ev.answering(model, tokenizer, ("vst",), preprocess=None, device=None,
                             prompt=None, boundary=BOUNDARY, window=WINDOW, max_new_tokens=6)
    runtime = answering.runtime
    video = encode_video(runtime, [frames], BOUNDARY, name="v")
    memory = build_memory(runtime, answering.settings, video, "vst", 4, open_tail=True)
    closed = build_memory(runtime, answering.settings, video, "vst", 4)
    *stored, tail = video.intervals
    assert [(r.frame_start, r.frame_end) for r in memory.store.records] == \
        [(i.start, i.end) for i in stored] and stored
    c = video.tokens.shape[-1]
    torch.testing.assert_close(memory.raw, video.tokens[tail.start:tail.end + 1].reshape(-1, c))
    assert memory.raw_tokens == tail.num_frames * video.tokens_per_frame
    assert memory.memory_tokens < closed.memory_tokens and closed.raw is None
    mem = VideoMemory.on(runtime, MemoryConfig(ratio=4, window=WINDOW, boundary=BOUNDARY),
                         background=False)
    try:
        mem.extend(list(frames), timestamps=[float(t) for t in video.timestamps])
        state = mem.state
        assert [(r.frame_start, r.frame_end) for r in state.store.records] == \
            [(i.start, i.end) for i in stored]
        torch.testing.assert_close(state.store.keys(), memory.store.keys())
        torch.testing.assert_close(state.raw_tokens(), memory.raw)
        answers = []
        for qa in sample.qa:
            ids = ev.question_ids(answering, qa.question)
            scored = ev.answer_question(memory, qa.question, ids, answering.decoding)
            assert mem.ask(qa.question, max_new_tokens=6).text == scored
            answers.append(scored != ev.answer_question(closed, qa.question, ids,
                                                        answering.decoding))
        assert len(answers) >= 4 and any(answers)  # the raw tail is read, not ignored
    finally:
        mem.close()


def test_an_open_tail_is_refused_where_it_has_no_layout(model, runtime, settings,
                                                        video) -> None:
    with pytest.raises(ValueError, match="last_n"):
        build_memory(runtime, settings, video, "last_n", 2, open_tail=True)
    with pytest.raises(ValueError, match="last_n"):
        ev.evaluate(model, make_tokenizer(), methods=("vst", "last_n"), n_videos=1,
                    open_tail=True)
