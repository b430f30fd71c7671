"""Composite samples agree with their episodes, and the LLaVA export round-trips."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from streamvxl.world.answers import is_correct
from streamvxl.world.render import render
from streamvxl.world.scene import COLOURS, WorldConfig
from training.samples import (
    EXIST_STILL_FORMS,
    existence_still_sample,
    multi_image_sample,
    ordinal_variants,
    single_image_sample,
    to_llava_json,
    video_sample,
)


def test_multi_image_answers_match_the_images() -> None:
    rng = np.random.default_rng(0)
    forms = set()
    for _ in range(60):
        s = multi_image_sample(rng, n=3)
        k = len(s.episodes)
        assert 2 <= k <= 4 and s.frames.shape[0] == k and s.timestamps is None
        for j, ep in enumerate(s.episodes):
            np.testing.assert_array_equal(s.frames[j], render(ep)[0])
        for qa in s.qa:
            forms.add(qa.form)
            if qa.form == "which_image":
                hits = [j for j, ep in enumerate(s.episodes)
                        if any(o.name == qa.param("object") for o in ep.objects)]
                assert len(hits) == 1
                assert is_correct(ordinal_variants(hits[0])[0], qa)
                assert is_correct(f"image {hits[0] + 1}", qa)
                assert not is_correct(ordinal_variants((hits[0] + 1) % k)[0], qa)
            elif qa.form == "count_images":
                want = sum(any(o.shape == qa.param("shape") for o in ep.objects)
                           for ep in s.episodes)
                assert qa.answer == str(want)
            else:
                sizes = [len(ep.objects) for ep in s.episodes]
                assert qa.answer == f"the {['first', 'second', 'third', 'fourth'][int(np.argmax(sizes))]}"
                assert sizes.count(max(sizes)) == 1
    assert forms == {"which_image", "count_images", "most_objects"}


def test_single_image_and_video_samples() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        s = single_image_sample(rng, n=2)
        assert s.frames.shape == (1, 64, 64, 3) and all(qa.evidence == (0, 1) for qa in s.qa)
    cfg = WorldConfig(num_frames=20, fps=4.0)
    s = video_sample(rng, cfg, "eval", tasks=["count"], n=3)
    assert s.frames.shape == (20, 64, 64, 3)
    np.testing.assert_allclose(s.timestamps, np.arange(20) / 4.0)
    assert {qa.task for qa in s.qa} == {"count"}


def test_llava_export(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    samples = [single_image_sample(rng, n=2), multi_image_sample(rng, num_images=3),
               video_sample(rng, WorldConfig(num_frames=6), n=2)]
    path = to_llava_json(samples, tmp_path)
    records = json.loads(path.read_text())
    assert [r["id"] for r in records] == ["synth_000000", "synth_000001", "synth_000002"]
    image, multi, video = records
    assert Image.open(tmp_path / image["image"]).size == (64, 64)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / image["image"])),
                                  samples[0].frames[0])
    assert len(multi["image"]) == 3
    assert multi["conversations"][0]["value"].startswith("<image>\n" * 3)
    assert len(list((tmp_path / video["video"]).glob("*.png"))) == 6
    assert video["timestamps"] == [t / 2.0 for t in range(6)]
    for record, sample in zip(records, samples, strict=True):
        turns = record["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * len(sample.qa)
        assert turns[0]["value"].startswith("<image>\n")
        assert all("<image>" not in t["value"] for t in turns[1:])
        assert [t["value"] for t in turns[1::2]] == [qa.answer for qa in sample.qa]


def test_existence_stills_answer_from_the_still_and_word_both_answers_alike() -> None:
    """Every answer recomputed from the still's objects (a thing named by colour and/or shape
    is there when some object matches every named part); "yes" and "no" about equally often,
    asked in the same wordings and named the same ways, so only the still tells."""
    from collections import Counter

    from streamvxl.world.questions import naming

    assert EXIST_STILL_FORMS["exists_present"].templates == \
        EXIST_STILL_FORMS["exists_absent"].templates
    answers, namings = Counter(), {"yes": Counter(), "no": Counter()}
    for seed in range(300):
        sample = existence_still_sample(np.random.default_rng(seed), n=2,
                                        split="eval" if seed % 2 else "train")
        assert sample.kind == "image" and sample.frames.shape == (1, 64, 64, 3)
        (ep,) = sample.episodes
        assert not ep.signs and 1 <= len(ep.objects) <= 3
        for qa in sample.qa:
            shape, colour = qa.param("shape") or None, qa.param("colour") or None
            there = any(shape in (None, o.shape) and colour in (None, o.colour)
                        for o in ep.objects)
            assert qa.answer == ("yes" if there else "no"), qa
            assert is_correct(qa.answer, qa) and qa.question.endswith("?")
            answers[qa.answer] += 1
            namings[qa.answer][naming(qa)] += 1
    assert 0.4 <= answers["yes"] / sum(answers.values()) <= 0.6, answers
    for how in ("both", "shape", "colour"):
        shares = [namings[a][how] / sum(namings[a].values()) for a in ("yes", "no")]
        assert abs(shares[0] - shares[1]) < 0.08, namings


def test_images_with_unnamed_colours_are_asked_by_shape_and_answered_right() -> None:
    """Stills drawn with objects in unnamed colours: no question names a colour, an unnamed
    colour is answered as one, an image set names objects by shape across all its images,
    and every answer holds."""
    world = WorldConfig(unnamed_prob=0.5, max_objects=3)
    rng = np.random.default_rng(3)
    colours = [f" {c}" for c in COLOURS]
    asked = set()
    colour_asked = Counter()  # by whether the colour is unnamed
    for _ in range(80):
        s = multi_image_sample(rng, world, n=3)
        by_shape = any(o.unnamed is not None for ep in s.episodes for o in ep.objects)
        for qa in s.qa:
            if qa.form != "which_image":
                continue
            asked.add(by_shape)
            named = [[o.shape if by_shape else o.name for o in ep.objects] for ep in s.episodes]
            hits = [j for j, names in enumerate(named) if qa.param("object") in names]
            assert len(hits) == 1 and named[hits[0]].count(qa.param("object")) == 1, qa
            assert is_correct(ordinal_variants(hits[0])[0], qa)
        for kind in (single_image_sample(rng, world, n=3), existence_still_sample(rng, world, n=2)):
            (ep,) = kind.episodes
            if not any(o.unnamed is not None for o in ep.objects):
                continue
            for qa in kind.qa:
                shape = dict(qa.params).get("shape")
                if qa.form == "colour_of_shape":
                    (obj,) = [o for o in ep.objects if o.shape == shape]
                    unnamed = obj.unnamed is not None
                    assert qa.answer == ("an unnamed colour" if unnamed else obj.colour), qa
                    colour_asked[unnamed] += 1
                    continue
                assert not any(c in f" {qa.question} {qa.answer}".lower() for c in colours), qa
                if qa.form in ("exists_present", "exists_absent"):
                    want = any(o.shape == shape for o in ep.objects)
                    assert qa.answer == ("yes" if want else "no")
                elif qa.form == "count_shape":
                    assert qa.answer == str(sum(o.shape == shape for o in ep.objects))
    assert asked == {True, False} and colour_asked[True] > 0 and colour_asked[False] > 0
