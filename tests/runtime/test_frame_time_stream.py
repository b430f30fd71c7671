"""A model that stamps frames with their time (`VisualConfig.frame_time`), through a stream:
each frame's raw tokens are its stamp's embeddings then its visual tokens, the time counted
from the stream's first frame -- in the background worker as in the caller's thread, and
across a log's reopening."""

from __future__ import annotations

import pytest
import torch

from streamvxl import VideoMemory
from streamvxl.model.frame_time import STAMP_TOKENS
from streamvxl.runtime import Runtime
from streamvxl.testing import make_tokenizer, random_videoxl

from .helpers import config, scenes


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime(random_videoxl(0, frame_time=True), make_tokenizer())


def expected_raw(runtime: Runtime, frames, texts: list[str]) -> torch.Tensor:
    """The slow reference: each frame's stamp text embedded id by id, then its visual tokens
    from the vision path alone: (F * (K + T), C)."""
    tok, model = runtime.tokenizer, runtime.model
    rows = []
    for frame, text in zip(frames, texts, strict=True):
        ids = torch.tensor([[tok(ch, add_special_tokens=False)["input_ids"][0] for ch in text]])
        rows.append(model.embed_ids(ids)[0])
        rows.append(runtime.encode_images([frame]).tokens[0])
    return torch.cat(rows)


@pytest.mark.parametrize("background", [False, True])
def test_each_frame_follows_its_stamp_counted_from_the_first_frame(runtime, background) -> None:
    frames = scenes(1, 3)
    mem = VideoMemory.on(runtime, config(), background=background)
    try:
        mem.extend(frames, timestamps=[100.0, 100.5, 112.4])
        mem.wait()
        got = mem.state.raw_tokens()
        assert got is not None and got.shape[0] == 3 * runtime.model.tokens_per_frame
        want = expected_raw(runtime, frames, ["000000s", "000001s", "000012s"])
        torch.testing.assert_close(got, want)
        assert mem.state.time_origin == 100.0
    finally:
        mem.close()


def test_the_stored_memory_is_the_same_in_the_worker_and_in_the_callers_thread(runtime) -> None:
    frames = scenes(3, 5)
    stamps = [10.0 + 0.5 * i for i in range(len(frames))]
    kv = []
    for background in (False, True):
        mem = VideoMemory.on(runtime, config(), background=background)
        try:
            mem.extend(frames, timestamps=stamps)
            mem.flush()
            mem.wait()
            store = mem.state.store
            assert store.records, "the scenes close intervals"
            kv.append((store.keys().clone(), store.values().clone()))
        finally:
            mem.close()
    torch.testing.assert_close(kv[0], kv[1])


def test_a_reopened_log_stamps_on_the_clock_it_was_written_with(runtime, tmp_path) -> None:
    log_dir = tmp_path / "log"
    frames = scenes(2, 5)
    mem = VideoMemory.on(runtime, config(log_dir=str(log_dir)), background=False)
    try:
        mem.extend(frames, timestamps=[50.0 + i for i in range(len(frames))])
        mem.flush()
        mem.wait()
        stored = len(mem.state.store.records)
        assert stored > 0
    finally:
        mem.close()
    again = VideoMemory.open(log_dir, runtime=runtime, background=False)
    try:
        assert len(again.state.store.records) == stored
        assert again.state.time_origin == 50.0
        later = scenes(1, 1, seed=5)
        again.push(later[0], timestamp=70.2)
        again.wait()
        got = again.state.raw_tokens()
        assert got is not None
        torch.testing.assert_close(got, expected_raw(runtime, later, ["000020s"]))
    finally:
        again.close()


def test_a_model_without_the_switch_takes_visual_tokens_only() -> None:
    runtime = Runtime(random_videoxl(0), make_tokenizer())
    frames = scenes(1, 2)
    mem = VideoMemory.on(runtime, config(), background=False)
    try:
        mem.extend(frames, timestamps=[0.0, 5.0])
        mem.wait()
        got = mem.state.raw_tokens()
        assert got is not None
        torch.testing.assert_close(got, runtime.encode_images(frames).tokens.flatten(0, 1))
        assert runtime.model.tokens_per_frame + STAMP_TOKENS == \
            random_videoxl(0, frame_time=True).tokens_per_frame
    finally:
        mem.close()
