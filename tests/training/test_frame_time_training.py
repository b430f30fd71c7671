"""Training and evaluation with frame time stamps (`VisualConfig.frame_time`): examples carry
the stamps a stream would give the same frames, the forward reads them, and the evaluation's
memories are built from stamped frames as the product's are."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from streamvxl.intervals import BoundaryConfig
from streamvxl.model.frame_time import STAMP_TOKENS, StampIds
from streamvxl.preprocess import Preprocessor
from streamvxl.prompt import PromptTemplate
from streamvxl.runtime import Runtime
from streamvxl.testing import make_tokenizer, random_videoxl
from streamvxl.world import WorldConfig
from training.baselines import STILLS_FPS, encode_video
from training.batch import TaskMix, draw_sample, make_example
from training.forward import example_loss

BOUNDARY = BoundaryConfig(window=1, min_frames=2, max_frames=4, threshold=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def _sample(kind: str, seed: int = 0):
    mix = TaskMix(1.0, 0.0, 0.0) if kind == "video" else TaskMix(0.0, 1.0, 0.0)
    world = WorldConfig(num_frames=8, height=56, width=56, max_objects=2)
    return draw_sample(np.random.default_rng(seed), world, mix, questions=2)


def _example(tokenizer, sample, frame_time: bool = True):
    return make_example(sample, tokenizer, PromptTemplate(), Preprocessor(56), (2, 4),
                        seed=0, vocab_size=512, frame_time=frame_time)


def _texts(tokenizer, ids: torch.Tensor) -> list[str]:
    return [tokenizer.decode(row.tolist()) for row in ids]


def test_a_video_example_carries_its_frames_stamps_from_the_first(tokenizer) -> None:
    sample = _sample("video")
    example = _example(tokenizer, sample)
    assert example.stamp_ids is not None
    times = sample.timestamps - sample.timestamps[0]
    want = [f"{int(t + 0.5):06d}s" for t in times]
    assert _texts(tokenizer, example.stamp_ids) == want
    assert _example(tokenizer, sample, frame_time=False).stamp_ids is None


def test_a_video_drawn_at_another_rate_is_stamped_at_its_own(tokenizer) -> None:
    # a world of several rates (`WorldConfig.rates`): the n-th frame's stamp tells the second
    mix = TaskMix(1.0, 0.0, 0.0)
    seen = {}
    for seed in range(12):
        world = WorldConfig(num_frames=8, height=56, width=56, max_objects=2, rates=(1.0, 4.0))
        sample = draw_sample(np.random.default_rng(seed), world, mix, questions=2)
        fps = sample.episodes[0].fps
        seen[fps] = _texts(tokenizer, _example(tokenizer, sample).stamp_ids)
    assert seen == {1.0: [f"{t:06d}s" for t in range(8)],
                    4.0: ["000000s", "000000s", "000001s", "000001s",
                          "000001s", "000001s", "000002s", "000002s"]}


def test_images_are_timed_as_the_probes_time_stills(tokenizer) -> None:
    sample = _sample("image")
    assert sample.timestamps is None
    ids = _example(tokenizer, sample).stamp_ids
    n = len(sample.frames)
    assert ids is not None and ids.shape == (n, STAMP_TOKENS)
    assert torch.equal(ids, StampIds(tokenizer)(list(np.arange(n) / STILLS_FPS)))


def test_the_forward_reads_the_stamps(tokenizer) -> None:
    """The same frames and questions with other stamps give another loss; the same stamps the
    same loss; an unstamped example under the stamping model is refused in a group."""
    torch.manual_seed(0)
    model = random_videoxl(0, frame_time=True)
    example = _example(tokenizer, _sample("video"))
    later = dataclasses.replace(example, stamp_ids=StampIds(tokenizer)(
        [100.0 + i for i in range(len(example.stamp_ids))]))
    with torch.no_grad():
        a = example_loss(model, example, BOUNDARY)[0]
        b = example_loss(model, dataclasses.replace(example), BOUNDARY)[0]
        c = example_loss(model, later, BOUNDARY)[0]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_an_evaluated_video_is_stamped_from_its_own_timestamps(tokenizer) -> None:
    """`encode_video` stamps each frame as a stream would: from the first frame's time, an
    outage's skipped seconds included."""
    runtime = Runtime(random_videoxl(0, frame_time=True), tokenizer)
    frames = np.random.default_rng(0).integers(0, 256, (4, 56, 56, 3), dtype=np.uint8)
    times = np.array([3.0, 3.5, 9.0, 9.5])  # 5 s offline between the second and third
    video = encode_video(runtime, [frames], BOUNDARY, timestamps=times)
    k = STAMP_TOKENS
    assert video.tokens.shape[1] == runtime.model.tokens_per_frame
    want = runtime.model.embed_ids(StampIds(tokenizer)([0.0, 0.5, 6.0, 6.5]))  # (4, K, C)
    torch.testing.assert_close(video.tokens[:, :k], want)
    torch.testing.assert_close(video.tokens[:, k:], runtime.encode_images(list(frames)).tokens)
    with pytest.raises(ValueError, match="timestamps"):
        encode_video(runtime, [frames], BOUNDARY, timestamps=times[:3])
