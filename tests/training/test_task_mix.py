"""The composite data mix: reading samples, and stages that change the mix.

- A reading sample is one still that shows a sign, with only needle questions, answered by the
  sign's text.
- Zero reading and long-video shares draw exactly the samples the three-kind mix drew (runs
  reproduce); long videos have their own frame count and tasks.
- A stage's own mix reaches the examples, in the training process and through the prefetching
  workers alike; stages with a mix parse from JSON and round-trip through a checkpoint's config.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamvxl.world import WorldConfig
from training.batch import READING_FORMS, TaskMix, draw_sample
from training.recipe_config import RecipeConfig, Stage, config_from_dict

WORLD = WorldConfig(num_frames=12, height=64, width=64, max_objects=3, sign_prob=0.5)
READING = TaskMix(video=0.0, image=0.0, multi_image=0.0, reading=1.0)


def test_reading_samples_ask_what_the_sign_says() -> None:
    for seed in range(40):
        sample = draw_sample(np.random.default_rng(seed), WORLD, READING, questions=3)
        (episode,) = sample.episodes
        (sign,) = episode.signs
        assert sample.frames.shape[0] == 1 and sample.qa
        for qa in sample.qa:
            assert qa.task == "needle" and qa.form in READING_FORMS
            assert qa.answer == sign.answer


def test_zero_reading_long_and_existence_still_shares_change_no_draw() -> None:
    mix = TaskMix()
    p3 = np.array([mix.video, mix.image, mix.multi_image]) / (mix.video + mix.image
                                                                + mix.multi_image)
    for seed in range(200):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert int(a.choice(6, p=mix.probabilities)) == int(b.choice(3, p=p3))
        assert a.random() == b.random()  # the streams stay in step


def test_long_videos_have_their_own_length_and_tasks() -> None:
    mix = TaskMix(video=1.0, image=0.0, multi_image=0.0, long_video=1.0, long_frames=40)
    kinds = set()
    for seed in range(30):
        sample = draw_sample(np.random.default_rng(seed), WORLD, mix, questions=3)
        kinds.add(sample.kind)
        if sample.kind == "long_video":
            assert sample.frames.shape[0] == 40 and sample.episodes[0].num_frames == 40
            assert {qa.task for qa in sample.qa} == {"needle"}
        else:
            assert sample.kind == "video" and sample.frames.shape[0] == WORLD.num_frames
    assert kinds == {"video", "long_video"}
    # every needle-only long video shows a sign, so none is redrawn: the share holds
    rng = np.random.default_rng(0)
    draws = [draw_sample(rng, WORLD, mix).kind for _ in range(300)]
    assert 0.42 < draws.count("long_video") / len(draws) < 0.58
    for bad in ({"long_tasks": ()}, {"long_tasks": ("colour",)}, {"long_frames": 0}):
        with pytest.raises(ValueError, match="long_"):
            TaskMix(**bad)


def test_long_videos_can_show_mostly_numbers() -> None:
    """``long_number_prob`` sets the long videos' number share only; None keeps the world's."""
    def signs(mix: TaskMix, kind: str) -> list[bool]:
        rng = np.random.default_rng(0)
        out = []
        for _ in range(40):
            sample = draw_sample(rng, WORLD, mix)
            if sample.kind == kind:
                out += [g.is_number for g in sample.episodes[0].signs]
        return out

    base = dict(video=1.0, image=0.0, multi_image=0.0, long_video=1.0, long_frames=16)
    numbers = signs(TaskMix(**base, long_number_prob=1.0), "long_video")
    assert numbers and all(numbers)
    words = signs(TaskMix(**base, long_number_prob=0.0), "long_video")
    assert words and not any(words)
    long_default = signs(TaskMix(**base), "long_video")
    assert 0 < sum(long_default) < len(long_default)  # the world's 50 %: both kinds
    assert long_default == signs(TaskMix(**base, long_number_prob=WORLD.number_prob),
                                 "long_video")
    short = signs(TaskMix(**base, long_number_prob=1.0), "video")
    assert short and not all(short)  # the short videos keep the world's share
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="long_number_prob"):
            TaskMix(long_number_prob=bad)


def _config(tmp_path, stages) -> RecipeConfig:
    return config_from_dict({
        "model": "tiny-random", "device": "cpu", "output_dir": str(tmp_path), "seed": 0,
        "stages": stages, "batch": 6, "questions": 2, "frames": 8, "window": 16,
        "mix": {"video": 1.0, "image": 0.0, "multi_image": 0.0},
        "boundary": {"window": 1, "min_frames": 2, "max_frames": 6}})


def test_stages_with_a_mix_parse_and_round_trip(tmp_path) -> None:
    reading = {"video": 0.0, "image": 0.0, "multi_image": 0.0, "reading": 1.0}
    cfg = _config(tmp_path, [[2, [2, 4], reading], {"steps": 3, "ratios": [8], "mix": reading},
                             [4, [16]]])
    assert cfg.stages == (Stage(2, (2, 4), READING), Stage(3, (8,), READING), Stage(4, (16,)))
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="stage"):
        _config(tmp_path, [[2, [2], reading, "extra"]])


def test_a_stage_mix_reaches_the_examples_in_process_and_in_workers(tmp_path) -> None:
    import torch

    from training.parallel import DistInfo
    from training.prefetch import Prefetcher
    from training.recipe import DataSource, load_model

    cfg = _config(tmp_path, [[1, [2], {"video": 0.0, "image": 0.0, "multi_image": 0.0,
                                       "reading": 1.0}], [1, [2]]])
    model, tokenizer, preprocess = load_model(cfg, None)
    world = WorldConfig(num_frames=cfg.frames, height=model.image_size, width=model.image_size,
                        sign_prob=0.5)
    data = DataSource(cfg, world, tokenizer, preprocess, model.config.llm.vocab_size)
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    here = {s: data.step_examples(s, cfg.stage_at(s)[1].ratios, info, cfg.stage_at(s)[1].mix)
            for s in (1, 2)}
    assert all(qa.task == "needle" for e in here[1] for qa in e.qa)
    assert any(qa.task != "needle" for e in here[2] for qa in e.qa)  # the run's video mix

    def plan(s: int):
        stage = cfg.stage_at(s)[1]
        return (data.step_indices(s, info), stage.ratios, stage.mix) if s <= 2 else None

    with Prefetcher(data, 2, plan) as pool:
        for s in (1, 2):
            got = pool.get(s)
            assert [e.qa for e in got] == [e.qa for e in here[s]]


def test_a_grammar_share_words_video_questions_by_the_training_grammar() -> None:
    from streamvxl.world.questions import FORMS

    videos = TaskMix(video=1.0, image=0.0, multi_image=0.0, grammar_prob=1.0,
                     video_tasks=("attribute", "order", "count", "time", "needle"))
    outside = 0
    for seed in range(30):
        sample = draw_sample(np.random.default_rng(seed), WORLD, videos, questions=3)
        outside += sum(qa.template not in FORMS[qa.form].templates for qa in sample.qa)
    assert outside >= 30  # most of ~90 questions: openings, closings and new cores
    plain = TaskMix(video=1.0, image=0.0, multi_image=0.0,
                    video_tasks=("attribute", "order", "count", "time", "needle"))
    for seed in range(30):
        sample = draw_sample(np.random.default_rng(seed), WORLD, plain, questions=3)
        assert all(qa.template in FORMS[qa.form].templates for qa in sample.qa)
    with pytest.raises(ValueError, match="grammar_prob"):
        TaskMix(grammar_prob=-0.1)


def test_a_balanced_existence_draw_reaches_short_and_long_videos(tmp_path) -> None:
    """``TaskMix.exist_naming`` reaches both video kinds: balanced, absent things are named by
    one part about as often as present ones (two thirds); recorded, far less often. A stage's
    mix carries it through a checkpoint's config; an unknown draw is refused."""
    from collections import Counter

    from streamvxl.world.questions import naming

    def one_part(mix: TaskMix) -> dict[str, float]:
        counts = {"yes": Counter(), "no": Counter()}
        for seed in range(120):
            for qa in draw_sample(np.random.default_rng(seed), WORLD, mix, questions=3).qa:
                if (how := naming(qa)) is not None:
                    counts[qa.answer][how != "both"] += 1
        return {k: c[True] / sum(c.values()) for k, c in counts.items()}

    for kind in ("video", "long_video"):
        shares = {draw: one_part(TaskMix(video=float(kind == "video"), image=0.0,
                                         multi_image=0.0, long_video=float(kind != "video"),
                                         long_frames=16, video_tasks=("exist",),
                                         long_tasks=("exist",), exist_naming=draw))
                  for draw in ("recorded", "balanced")}
        assert shares["recorded"]["no"] < 0.25 < 0.5 < shares["recorded"]["yes"], shares
        assert abs(shares["balanced"]["no"] - shares["balanced"]["yes"]) < 0.12, shares
    cfg = _config(tmp_path, [[2, [2, 4], {"exist_naming": "balanced"}]])
    assert cfg.stages[0].mix == TaskMix(exist_naming="balanced")
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="exist_naming"):
        TaskMix(exist_naming="even")  # type: ignore[arg-type]


def test_an_existence_still_share_draws_stills_asked_whether_a_thing_is_there() -> None:
    mix = TaskMix(video=0.0, image=0.0, multi_image=0.0, exist_stills=1.0)
    for seed in range(20):
        sample = draw_sample(np.random.default_rng(seed), WORLD, mix, questions=2)
        assert sample.kind == "image" and sample.frames.shape[0] == 1
        assert {qa.form for qa in sample.qa} <= {"exists_present", "exists_absent"}
    with pytest.raises(ValueError, match="weights"):
        TaskMix(exist_stills=-1.0)


def test_training_videos_with_an_outage_carry_the_memorys_note() -> None:
    """A training video whose camera went offline lacks those frames, and its questions start
    with the note the memory tells the model at answer time (`streamvxl.gaps`), so training
    and the product ask in the same words."""
    from streamvxl.frames import Gap
    from streamvxl.preprocess import Preprocessor
    from streamvxl.prompt import PromptTemplate
    from streamvxl.testing import make_tokenizer
    from training.batch import make_example

    tokenizer = make_tokenizer()
    world = WorldConfig(num_frames=24, height=56, width=56, max_objects=2, offline_prob=1.0)
    mix = TaskMix(1.0, 0.0, 0.0, video_tasks=("offline", "count"))
    outages = 0
    for seed in range(12):
        sample = draw_sample(np.random.default_rng(seed), world, mix, questions=2)
        ep = sample.episodes[0]
        gaps = []
        if ep.offline is not None:
            a, b = ep.offline
            gaps = [Gap((a - 1) / world.fps, b / world.fps, "no frames came")]
            assert len(sample.frames) == len(sample.timestamps) == ep.num_frames - (b - a)
            outages += 1
        example = make_example(sample, tokenizer, PromptTemplate(), Preprocessor(56), (2,),
                               seed=seed, vocab_size=512)
        for qa, ids in zip(sample.qa, example.questions, strict=True):
            text = PromptTemplate().format_question(qa.question, gaps)
            assert ids.tolist() == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert outages >= 3


def test_video_task_weights_reach_the_questions_and_round_trip(tmp_path) -> None:
    """A mix's task weights set which video questions are asked; given as a mapping they are
    kept as sorted pairs, and they survive a checkpoint's config (JSON) unchanged."""
    mix = TaskMix(video=1.0, image=0.0, multi_image=0.0, video_tasks=("order", "count"),
                  video_task_weights={"count": 0.0, "order": 2})
    assert mix.video_task_weights == (("count", 0.0), ("order", 2.0))
    assert mix == TaskMix(video=1.0, image=0.0, multi_image=0.0, video_tasks=("order", "count"),
                          video_task_weights=[("order", 2.0), ("count", 0.0)])
    rng = np.random.default_rng(0)
    tasks = {qa.task for _ in range(30) for qa in draw_sample(rng, WORLD, mix, 2).qa}
    assert tasks == {"order"}
    plain = TaskMix(video=1.0, image=0.0, multi_image=0.0)
    same = TaskMix(video=1.0, image=0.0, multi_image=0.0, video_task_weights={})
    for seed in range(10):  # no weights: the draws of every run before them
        a = draw_sample(np.random.default_rng(seed), WORLD, plain, 3)
        b = draw_sample(np.random.default_rng(seed), WORLD, same, 3)
        assert a.qa == b.qa
    cfg = _config(tmp_path, [[2, [2, 4], {"video": 1.0, "image": 0.0, "multi_image": 0.0,
                                          "video_task_weights": {"order": 3, "time": 2}}]])
    assert cfg.stages[0].mix.video_task_weights == (("order", 3.0), ("time", 2.0))
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in ({"colour": 1.0}, {"order": -1.0}, {t: 0.0 for t in ("order", "count")}):
        with pytest.raises(ValueError, match="video_task_weights"):
            TaskMix(video_tasks=("order", "count"), video_task_weights=bad)
