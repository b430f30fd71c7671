"""Composite training data: single images, image sets and videos with questions, and a
LLaVA-style JSON export.

- `single_image_sample`: one still with attribute / count / sign questions.
- `multi_image_sample`: 2-4 stills with a comparison question ("Which image shows the red
  circle?" -> "the second").
- `video_sample`: an episode rendered, its timestamps, and `make_questions` over it.
- `to_llava_json`: PNG files plus a ``data.json`` list of ``{"id", "image" | "video",
  "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", ...}]}``.

Letters: F = frames (or images), H, W = frame size.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from streamvxl.world.questions import (
    ORDINALS,
    QA,
    ExistNaming,
    Fact,
    Form,
    Task,
    draw_questions,
    form_facts,
    make_questions,
    number_variants,
    shape_only,
)
from streamvxl.world.render import camera_feed, render
from streamvxl.world.scene import (
    PLURALS,
    SHAPES,
    Episode,
    Split,
    WorldConfig,
    sample_episode,
    sample_still,
)

logger = logging.getLogger(__name__)

SampleKind = Literal["image", "multi_image", "video", "long_video"]
""""long_video": a video longer than the run's others (`training.batch.TaskMix.long_video`)."""


@dataclass(frozen=True)
class Sample:
    """Frames with questions about them, and the ground truth they came from."""

    kind: SampleKind
    frames: np.ndarray
    """(F, H, W, 3) uint8: one image, 2-4 images, or a video's frames."""
    timestamps: np.ndarray | None
    """(F,) seconds of each video frame; None for images."""
    qa: tuple[QA, ...]
    episodes: tuple[Episode, ...]
    """One episode per image, or the video's episode."""


def _image_form(name: str, task: Task, kind: Literal["text", "number"],
                *phrasings: str) -> Form:
    return Form(name, task, kind, phrasings, ())


IMAGE_FORMS: dict[str, Form] = {f.name: f for f in (
    _image_form(
        "colour_of_shape", "attribute", "text",
        "What colour is the {shape}?", "What color is the {shape} in the image?",
        "Which colour does the {shape} have?", "Tell me the color of the {shape}.",
        "What is the colour of the {shape} shown?", "Name the colour of the {shape} in the "
        "picture."),
    _image_form(
        "shape_of_colour", "attribute", "text",
        "What shape is the {colour} object?", "Which shape is {colour} in the image?",
        "What is the shape of the {colour} object?",
        "Name the shape of the {colour} object in the picture.",
        "The {colour} object: what shape is it?", "Tell me what shape is drawn in {colour}."),
    _image_form(
        "count_objects", "count", "number",
        "How many objects are in the image?", "How many shapes can you see?",
        "Count the objects in the picture.", "What is the number of objects shown?",
        "How many objects does the image contain?", "Tell me how many shapes are drawn."),
    _image_form(
        "count_colour", "count", "number",
        "How many {colour} objects are in the image?", "Count the {colour} objects.",
        "How many objects are {colour}?", "How many {colour} shapes can you see?",
        "What is the number of {colour} objects in the picture?",
        "Tell me how many {colour} objects are shown."),
    _image_form(
        "count_shape", "count", "number",
        "How many {shapes} are in the image?", "Count the {shapes}.",
        "How many {shapes} can you see?", "What is the number of {shapes} in the picture?",
        "How many of the objects are {shapes}?", "Tell me how many {shapes} are shown."),
    _image_form(
        "needle_word", "needle", "text",
        "What word is written on the sign?", "What does the sign say?",
        "Read the sign in the image.", "What text is on the sign?",
        "Which word is shown on the sign?", "Tell me what the sign says."),
    _image_form(
        "needle_number", "needle", "number",
        "What number is written on the sign?", "What does the sign say?",
        "Read the number on the sign.", "Which number is on the sign?",
        "What number is shown on the sign?", "Tell me the number on the sign."),
)}
"""Question forms about one still (same facts as the video forms of the same name)."""

_IS_THERE = ("Is there {np} in the image?", "Does the picture show {np}?",
             "Can you see {np} in the image?", "Is {np} shown in the picture?",
             "Does the image contain {np}?", "Do you see {np}?")
EXIST_STILL_FORMS: dict[str, Form] = {
    name: Form(name, "exist", "yes_no", _IS_THERE, (), weight=weight)
    for name, weight in (("exists_present", 1.0), ("exists_absent", 1.0))}
"""Whether one still shows a thing, worded alike for "yes" and "no" and named as the balanced
existence draw names it (`streamvxl.world.questions.ExistNaming`): a model that does not
tell present from absent things in a video's memory -- the uncompressed one included
(docs/results.md) -- is taught first where everything is in one frame. Apart from
`IMAGE_FORMS`, so the image questions runs drew stay as they were."""

MULTI_IMAGE_FORMS: dict[str, Form] = {f.name: f for f in (
    _image_form(
        "which_image", "compare", "text",
        "Which image shows the {obj}?", "In which picture is the {obj}?",
        "Which of the images contains the {obj}?", "Where is the {obj}: in which image?",
        "Which image has the {obj} in it?", "Point out the image with the {obj}."),
    _image_form(
        "count_images", "compare", "number",
        "In how many of the images is there a {shape}?", "How many images contain a {shape}?",
        "Count the images that show a {shape}.", "How many of these pictures have a {shape}?",
        "In how many images can you see a {shape}?",
        "How many images include at least one {shape}?"),
    _image_form(
        "most_objects", "compare", "text",
        "Which image has the most objects?", "Which picture contains the most shapes?",
        "In which image are there the most objects?",
        "Which of the images shows the most shapes?", "Which image is the most crowded?",
        "Which image has more objects than any other?"),
)}
"""Question forms comparing 2-4 stills; answers name an image by ordinal ("the second")."""


def ordinal_variants(index: int) -> tuple[str, ...]:
    """Ways to name image ``index`` (0-based): ("the second", "second image", "image 2", ...)."""
    word, n = ORDINALS[index], index + 1
    return (f"the {word}", word, f"{word} image", f"{word} one", f"{word} picture",
            f"image {n}", f"picture {n}", str(n))


def single_image_sample(rng: np.random.Generator, config: WorldConfig | None = None,
                        split: Split = "train", n: int = 1, sign: bool | None = None,
                        forms: Sequence[str] | None = None) -> Sample:
    """One still (objects, maybe a sign) and up to ``n`` questions about it.

    ``sign`` forces a sign (True) or none (False); None leaves it to ``config.sign_prob``.
    ``forms`` limits the questions to these `IMAGE_FORMS` (None: all of them).

    Example:
        >>> s = single_image_sample(np.random.default_rng(0))
        >>> s.frames.shape, s.qa[0].evidence
        ((1, 64, 64, 3), (0, 1))
    """
    cfg = config or WorldConfig()
    names = tuple(IMAGE_FORMS) if forms is None else tuple(forms)
    unknown = [f for f in names if f not in IMAGE_FORMS]
    if unknown:
        raise ValueError(f"unknown image forms {unknown}; valid: {sorted(IMAGE_FORMS)}")
    ep = sample_still(rng, cfg, split, sign=sign)
    chosen = {name: IMAGE_FORMS[name] for name in names}
    facts = {name: form_facts(name, ep, rng) for name in chosen}
    qa = draw_questions(facts, chosen, rng, split, n)
    return Sample("image", render(ep), None, tuple(qa), (ep,))


def existence_still_sample(rng: np.random.Generator, config: WorldConfig | None = None,
                           split: Split = "train", n: int = 1) -> Sample:
    """One still (1-3 objects, no sign) and up to ``n`` questions whether it shows a thing
    (`EXIST_STILL_FORMS`: "yes" and "no" alike often, absent things named as present ones).

    Example:
        >>> s = existence_still_sample(np.random.default_rng(0), n=2)
        >>> s.frames.shape, [qa.question for qa in s.qa], [qa.answer for qa in s.qa]
        ((1, 64, 64, 3), ['Do you see a circle?', 'Is there a cross in the image?'], ['yes', 'yes'])
    """
    ep = sample_still(rng, config or WorldConfig(), split, num_objects=int(rng.integers(1, 4)),
                      sign=False)
    facts = {name: form_facts(name, ep, rng, exist_naming="balanced")
             for name in EXIST_STILL_FORMS}
    qa = draw_questions(facts, EXIST_STILL_FORMS, rng, split, n)
    return Sample("image", render(ep), None, tuple(qa), (ep,))


def _multi_image_facts(eps: Sequence[Episode], rng: np.random.Generator) -> dict[str, list[Fact]]:
    k = len(eps)
    facts: dict[str, list[Fact]] = {name: [] for name in MULTI_IMAGE_FORMS}
    # an image with an object in an unnamed colour: every image's objects named by shape, as
    # in a video (`streamvxl.world.questions.shape_only`)
    by_shape = any(shape_only(ep) for ep in eps)
    names = [[o.shape if by_shape else o.name for o in ep.objects] for ep in eps]
    for j in range(k):
        for name in names[j]:
            if sum(name in s for s in names) == 1 and names[j].count(name) == 1:
                facts["which_image"].append(Fact({"obj": name}, f"the {ORDINALS[j]}",
                                                 ordinal_variants(j), (j, j + 1),
                                                 (("object", name),)))
    has = [{o.shape for o in ep.objects} for ep in eps]
    present = [s for s in SHAPES if any(s in h for h in has)]
    absent = [s for s in SHAPES if s not in present]
    for shape in present + ([absent[int(rng.integers(len(absent)))]] if absent else []):
        count = sum(shape in h for h in has)
        facts["count_images"].append(Fact({"shape": shape, "shapes": PLURALS[shape]}, str(count),
                                          number_variants(count), (0, k), (("shape", shape),)))
    sizes = [len(ep.objects) for ep in eps]
    if sizes.count(max(sizes)) == 1:
        j = sizes.index(max(sizes))
        facts["most_objects"].append(Fact({}, f"the {ORDINALS[j]}", ordinal_variants(j),
                                          (j, j + 1)))
    return facts


def multi_image_sample(rng: np.random.Generator, config: WorldConfig | None = None,
                       split: Split = "train", num_images: int | None = None,
                       n: int = 1) -> Sample:
    """2-4 stills (1-3 objects each, no signs) and up to ``n`` comparison questions.

    Example:
        >>> s = multi_image_sample(np.random.default_rng(0), num_images=3)
        >>> s.frames.shape[0], s.qa[0].task
        (3, 'compare')
    """
    cfg = (config or WorldConfig()).drawn(rng)  # one size for all the images
    k = int(rng.integers(2, 5)) if num_images is None else num_images
    if not 2 <= k <= len(ORDINALS):
        raise ValueError(f"num_images must be in [2, {len(ORDINALS)}], got {k}")
    eps = tuple(sample_still(rng, cfg, split, num_objects=int(rng.integers(1, 4)), sign=False)
                for _ in range(k))
    qa = draw_questions(_multi_image_facts(eps, rng), MULTI_IMAGE_FORMS, rng, split, n)
    frames = np.concatenate([render(ep) for ep in eps])  # (k, H, W, 3)
    return Sample("multi_image", frames, None, tuple(qa), eps)


def video_sample(rng: np.random.Generator, config: WorldConfig | None = None,
                 split: Split = "train", tasks: Iterable[Task] | None = None,
                 n: int = 4, grammar_prob: float = 0.0,
                 exist_naming: ExistNaming = "recorded",
                 task_weights: Mapping[str, float] | None = None) -> Sample:
    """A random episode as its camera delivered it (`streamvxl.world.camera_feed`: an outage's
    frames missing), with the frames' timestamps and up to ``n`` questions
    (``grammar_prob``: `streamvxl.world.make_questions`'s share of template-form questions
    worded by the training grammar; ``exist_naming``: how existence questions name absent
    things, `streamvxl.world.questions.ExistNaming`; ``task_weights``: how often each task is
    asked, as `make_questions` takes them).

    Example:
        >>> s = video_sample(np.random.default_rng(0), WorldConfig(num_frames=16))
        >>> s.frames.shape, s.timestamps[:3].tolist()
        ((16, 64, 64, 3), [0.0, 0.5, 1.0])
    """
    ep = sample_episode(rng, config, split)
    qa = make_questions(ep, rng, split, tasks, n, grammar_prob=grammar_prob,
                        exist_naming=exist_naming, task_weights=task_weights)
    return Sample("video", *camera_feed(ep), tuple(qa), (ep,))


def _save_png(frame: np.ndarray, path: Path) -> None:
    Image.fromarray(frame).save(path, compress_level=1)


def to_llava_json(samples: Iterable[Sample], out_dir: str | Path,
                  prefix: str = "synth") -> Path:
    """Write samples as PNG files plus a LLaVA-style ``data.json``; returns the JSON path.

    Images go to ``images/<id>.png`` (``<id>_<j>.png`` for image sets, listed in order under
    "image"); videos to ``videos/<id>/<t>.png`` with "video" naming the folder and extra keys
    "timestamps" and "fps". Every QA becomes one human/gpt turn; the first human turn starts
    with one ``<image>`` line per image (one for a video). A "meta" key keeps task, form,
    accepted answers and evidence for evaluation.

    Example:
        >>> import tempfile
        >>> rng = np.random.default_rng(0)
        >>> path = to_llava_json([single_image_sample(rng)], tempfile.mkdtemp())
        >>> json.loads(path.read_text())[0]["conversations"][0]["value"].startswith("<image>")
        True
    """
    out = Path(out_dir)
    records = []
    for i, s in enumerate(samples):
        sid = f"{prefix}_{i:06d}"
        record: dict[str, object] = {"id": sid}
        if s.kind == "image":
            (out / "images").mkdir(parents=True, exist_ok=True)
            _save_png(s.frames[0], out / "images" / f"{sid}.png")
            record["image"] = f"images/{sid}.png"
            tags = 1
        elif s.kind == "multi_image":
            (out / "images").mkdir(parents=True, exist_ok=True)
            paths = []
            for j, frame in enumerate(s.frames):
                _save_png(frame, out / "images" / f"{sid}_{j}.png")
                paths.append(f"images/{sid}_{j}.png")
            record["image"] = paths
            tags = len(paths)
        else:
            folder = out / "videos" / sid
            folder.mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(s.frames):
                _save_png(frame, folder / f"{t:05d}.png")
            record["video"] = f"videos/{sid}"
            record["timestamps"] = [float(x) for x in s.timestamps] \
                if s.timestamps is not None else []
            record["fps"] = s.episodes[0].fps
            tags = 1
        turns = []
        for q, qa in enumerate(s.qa):
            prefix_tags = "<image>\n" * tags if q == 0 else ""
            turns.append({"from": "human", "value": prefix_tags + qa.question})
            turns.append({"from": "gpt", "value": qa.answer})
        record["conversations"] = turns
        record["meta"] = [{"task": qa.task, "form": qa.form, "accepted": list(qa.accepted),
                           "kind": qa.kind, "evidence": list(qa.evidence),
                           "novel_phrasing": qa.novel_phrasing} for qa in s.qa]
        records.append(record)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "data.json"
    path.write_text(json.dumps(records, indent=1))
    logger.info("wrote %d samples to %s", len(records), path)
    return path


__all__ = [
    "IMAGE_FORMS",
    "MULTI_IMAGE_FORMS",
    "Sample",
    "multi_image_sample",
    "ordinal_variants",
    "single_image_sample",
    "to_llava_json",
    "video_sample",
]
