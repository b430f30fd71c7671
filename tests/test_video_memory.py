"""VideoMemory: streaming equals offline (in both modes), accounting, budget, bad input, reset."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from streamvxl.config import MemoryConfig
from streamvxl.errors import CheckpointError, ConfigError, FrameError, QuestionError
from streamvxl.intervals.ratio import DensityRatio
from streamvxl.model.layout import split_windows, window_layout
from streamvxl.runtime.question import prepare_question
from streamvxl.video_memory import VideoMemory
from tests.runtime.helpers import BOUNDARY, QUESTION, scenes

MODES = [pytest.param(False, id="sync"), pytest.param(True, id="worker")]


def memory(ckpt, background: bool = False, **kw) -> VideoMemory:
    kw.setdefault("boundary", BOUNDARY)
    kw.setdefault("ratio", 2)
    return VideoMemory.from_pretrained(ckpt, config=MemoryConfig(**kw), device="cpu",
                                       background=background)


def kv(mem: VideoMemory) -> tuple[torch.Tensor, torch.Tensor]:
    mem.wait()
    return mem.state.store.keys().clone(), mem.state.store.values().clone()


@pytest.mark.parametrize("background", MODES)
def test_streaming_equals_offline(tiny_checkpoint, background: bool) -> None:
    """Frames pushed one by one -- in the caller's thread or through the worker, questions
    between them -- give the memory and answers of the same frames added at once."""
    frames = scenes()
    times = [0.5 * i for i in range(len(frames))]
    streamed = memory(tiny_checkpoint, background)
    mid_answers = []
    for i, (f, t) in enumerate(zip(frames, times, strict=True)):
        streamed.push(f, timestamp=t)
        if i in (4, 17, 30):
            mid_answers.append(streamed.ask(QUESTION, max_new_tokens=3, output_logits=True))
    streamed.flush()
    offline = memory(tiny_checkpoint)
    offline.extend(frames, timestamps=times)
    offline.flush()

    assert streamed.intervals == offline.intervals  # spans, ratios, token counts, times
    for a, b in zip(streamed.intervals, offline.intervals, strict=True):
        torch.testing.assert_close(a.embedding, b.embedding, atol=1e-5, rtol=0)
    assert len(streamed.intervals) >= 3, "the scenes should produce several intervals"
    (ks, vs), (ko, vo) = kv(streamed), kv(offline)
    torch.testing.assert_close(ks, ko, atol=1e-5, rtol=0)
    torch.testing.assert_close(vs, vo, atol=1e-5, rtol=0)
    a = streamed.ask(QUESTION, max_new_tokens=4, output_logits=True)
    b = offline.ask(QUESTION, max_new_tokens=4, output_logits=True)
    assert a.token_ids == b.token_ids
    torch.testing.assert_close(a.logits, b.logits, atol=1e-4, rtol=0)
    assert all(m.logits is not None for m in mid_answers)
    streamed.close()


@pytest.mark.parametrize("background", MODES)
def test_mid_stream_answer_sees_open_interval(tiny_checkpoint, background: bool) -> None:
    """An answer mid-stream equals [sink | closed intervals | open frames raw | question],
    rebuilt from scratch with the runtime's tensor-level operations from the frames' tokens."""
    frames = scenes(3, 8, seed=1)
    mem = memory(tiny_checkpoint, background)
    for i, f in enumerate(frames[:23]):
        mem.push(f, timestamp=float(i))
    got = mem.ask(QUESTION, max_new_tokens=3, output_logits=True, wait=True)
    assert mem.stats().open_frames > 0 and mem.intervals

    runtime = mem.runtime
    with torch.no_grad():
        tokens = mem.model.encode_frames(mem.preprocessor(frames[:23])).tokens  # (F, T, C)
    store = runtime.new_store()
    runtime.set_sink(store, torch.tensor(mem.state.settings.prefix_ids))
    for r in mem.intervals:
        runtime.compress(store, tokens[r.frame_start:r.frame_end + 1], r.ratio,
                         mem.state.settings.window)
    open_from = mem.intervals[-1].frame_end + 1
    assert 23 - open_from == mem.stats().open_frames
    q = prepare_question(mem.tokenizer, mem.config.prompt, 512, QUESTION, 3, 0.0, 1.0, None,
                         True)
    want = runtime.decode(store, tokens[open_from:], q.ids, 3, mem.state.settings.stop_ids)
    assert got.token_ids == want.generation.ids
    torch.testing.assert_close(got.logits, torch.stack(want.generation.step_logits), atol=1e-4,
                               rtol=0)
    assert got.intervals[-1].compressed is False
    assert got.intervals[-1].num_frames == 23 - open_from


def test_ask_does_not_change_memory(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint)
    for i, f in enumerate(scenes(2, 9)):
        mem.push(f, timestamp=float(i))
    before, stats = kv(mem), mem.stats()
    first = mem.ask(QUESTION, max_new_tokens=5)
    mem.ask("How many boxes are there?", max_new_tokens=5)
    again = mem.ask(QUESTION, max_new_tokens=5)
    after = kv(mem)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert mem.stats() == stats
    assert first.token_ids == again.token_ids


def test_memory_accounting(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint, ratio=3, window=12)
    frames = scenes(8, 9)
    for i, f in enumerate(frames):
        mem.push(f, timestamp=float(i))
    mem.flush()
    tpf = mem.model.tokens_per_frame
    stats = mem.stats()
    vsts = 0
    for r in mem.intervals:
        expected = sum(window_layout(e - s, 3, "summarize").num_vst
                       for s, e in split_windows(r.num_frames * tpf, 12))
        assert r.num_tokens == expected
        vsts += expected
    assert stats.memory_tokens == stats.sink_tokens + vsts
    llm = mem.model.config.llm
    kv_token = 2 * llm.num_hidden_layers * llm.num_key_value_heads * llm.dim_per_head * 4
    # the store keeps pre-RoPE keys, rotated keys and values: 1.5x a plain K/V cache per token
    assert stats.memory_bytes == stats.memory_tokens * kv_token * 3 // 2
    # The raw tokens' K/V are gone: what is kept is far less than their plain K/V cache.
    raw_bytes = len(frames) * tpf * kv_token
    assert stats.memory_bytes < raw_bytes * 0.6
    assert stats.allocated_bytes == mem.state.store.arena.capacity * kv_token * 3 // 2
    assert sum(r.num_frames for r in mem.intervals) == len(frames) == stats.frames_seen


def test_budget_drop_oldest_keeps_memory_flat(tiny_checkpoint) -> None:
    budget = 60
    mem = memory(tiny_checkpoint, ratio=2, token_budget=budget)
    llm = mem.model.config.llm
    per_token = 3 * llm.num_hidden_layers * llm.num_key_value_heads * llm.dim_per_head * 4
    allocated, scratch = set(), set()
    for i, f in enumerate(scenes(8, 9, seed=3)):
        mem.push(f, timestamp=float(i))
        s = mem.stats()
        assert s.memory_tokens <= budget
        allocated.add(s.allocated_bytes)
        scratch.add(mem.runtime.device_bytes)
    # K, rotated K and V at the budget: allocated when the stream starts, never grows; the
    # runtime's encoder workspace was sized for this stream then, and stays as it is
    assert allocated == {budget * per_token}
    assert len(scratch) == 1
    s = mem.stats()
    assert s.intervals_evicted > 0
    ids = [r.id for r in mem.intervals]
    assert ids == list(range(s.intervals_closed - len(ids), s.intervals_closed))  # newest kept
    assert mem.ask(QUESTION, max_new_tokens=2).token_ids


def test_budget_too_small_is_rejected(tiny_checkpoint) -> None:
    with pytest.raises(ConfigError, match="token_budget"):
        memory(tiny_checkpoint, ratio=2, token_budget=10)


def test_density_ratio_varies_with_content(tiny_checkpoint) -> None:
    # The random tiny tower's embeddings of random frames differ little (cos ~0.997), so the
    # density thresholds are scaled to that; max_frames=10 splits static | busy exactly.
    mem = memory(tiny_checkpoint, ratio=DensityRatio((2, 4, 8), low=0.0001, high=0.001))
    rng = np.random.default_rng(5)
    static = [np.full((48, 64, 3), 120, np.uint8)] * 10
    busy = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(10)]
    mem.extend(static + busy, timestamps=[float(i) for i in range(20)])
    mem.flush()
    ratios = {r.ratio for r in mem.intervals}
    assert [r.ratio for r in mem.intervals] == [8, 2], ratios


def test_uncompressed_keeps_every_raw_token(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint, ratio=None)
    frames = scenes(2, 9)
    mem.extend(frames)
    mem.flush()
    assert mem.stats().memory_tokens == mem.stats().sink_tokens + len(frames) * 4


def test_reset_forgets_and_reproduces(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint)
    frames = scenes(2, 9)
    mem.extend(frames, timestamps=[float(i) for i in range(len(frames))])
    first = kv(mem)
    mem.reset()
    s = mem.stats()
    assert (s.frames_seen, s.memory_tokens, s.intervals_in_memory) == (0, s.sink_tokens, 0)
    mem.extend(frames, timestamps=[float(i) for i in range(len(frames))])
    second = kv(mem)
    assert torch.equal(first[0], second[0])


def test_frame_types_and_timestamps(tiny_checkpoint) -> None:
    import av

    from streamvxl.frames import Frame

    mem = memory(tiny_checkpoint)
    img = scenes(1, 1)[0]
    mem.push(Frame(img, timestamp=3.0, index=0))
    vf = av.VideoFrame.from_ndarray(img, format="rgb24")
    vf.pts, vf.time_base = 4, __import__("fractions").Fraction(1, 1)
    mem.push(vf)
    mem.push(torch.from_numpy(img).permute(2, 0, 1).float() / 255, timestamp=5.0)
    spans = mem.ask(QUESTION, max_new_tokens=1).intervals
    assert (spans[-1].t_start, spans[-1].t_end, spans[-1].num_frames) == (3.0, 5.0, 3)


BAD_FRAMES = [
    (np.zeros((48, 64), np.uint8), "2-D"),
    (np.zeros((48, 64, 4), np.uint8), "4"),
    (np.zeros((48, 64, 1), np.uint8), "1"),
    (np.zeros((48, 64, 3), np.int16), "int16"),
    (np.full((48, 64, 3), np.nan, np.float32), "NaN"),
    ("frame.png", "str"),
]


@pytest.mark.parametrize(("frame", "fragment"), BAD_FRAMES, ids=[b[1] for b in BAD_FRAMES])
def test_bad_frames_are_rejected_and_lose_nothing(tiny_checkpoint, frame, fragment) -> None:
    mem = memory(tiny_checkpoint)
    mem.push(scenes(1, 1)[0], timestamp=1.0)
    before = mem.stats()
    with pytest.raises(FrameError, match=fragment):
        mem.push(frame)
    with pytest.raises(FrameError):
        mem.extend([scenes(1, 1)[0], frame])
    assert mem.stats() == before


def test_decreasing_timestamp_rejected(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint)
    mem.push(scenes(1, 1)[0], timestamp=2.0)
    with pytest.raises(FrameError, match="must not decrease"):
        mem.push(scenes(1, 1)[0], timestamp=1.0)
    assert mem.stats().frames_seen == 1


@pytest.mark.parametrize(("question", "fragment"), [
    ("", "empty"), ("   \n", "empty"), (None, "str"), (42, "str"), ("car " * 600, "tokens"),
])
def test_bad_questions(tiny_checkpoint, question, fragment) -> None:
    mem = memory(tiny_checkpoint)
    with pytest.raises(QuestionError, match=fragment):
        mem.ask(question)


def test_bad_generation_length(tiny_checkpoint) -> None:
    with pytest.raises(ConfigError, match="max_new_tokens"):
        memory(tiny_checkpoint).ask(QUESTION, max_new_tokens=0)


def test_checkpoint_errors(tmp_path, monkeypatch) -> None:
    from streamvxl.model import default
    from tests.conftest import CONFORMANCE_DIR

    with pytest.raises(CheckpointError, match="no config.json"):
        VideoMemory.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="not a folder"):
        VideoMemory.from_pretrained(tmp_path / "missing")
    if (CONFORMANCE_DIR / "checkpoint").is_dir():
        with pytest.raises(CheckpointError, match="tokenizer"):
            VideoMemory.from_pretrained(CONFORMANCE_DIR / "checkpoint")
    # a package without its default weights (e.g. a source tree without the data file)
    monkeypatch.setattr(default, "DEFAULT_DELTA", tmp_path / "streamvxl-tiny.safetensors")
    with pytest.raises(CheckpointError, match="missing from this installation"):
        VideoMemory()


def test_open_source_into_memory(tiny_checkpoint) -> None:
    from streamvxl.sources import open_source

    mem = memory(tiny_checkpoint)
    with open_source("lavfi:testsrc=size=64x48:rate=10:duration=2", fps=5) as src:
        for frame in src:
            mem.push(frame)
    mem.flush()
    s = mem.stats()
    assert s.frames_seen == 10 and sum(r.num_frames for r in mem.intervals) == 10
    assert mem.intervals[-1].t_end == pytest.approx(1.8, abs=1e-6)


def test_sampled_answers_are_reproducible_with_a_seed(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint)
    mem.extend(scenes(2, 6), timestamps=[float(i) for i in range(12)])
    a = mem.ask(QUESTION, max_new_tokens=8, temperature=1.5, seed=3)
    b = mem.ask(QUESTION, max_new_tokens=8, temperature=1.5, seed=3)
    greedy = mem.ask(QUESTION, max_new_tokens=8)
    assert a.token_ids == b.token_ids
    assert a.token_ids != greedy.token_ids  # at temperature 1.5 over random logits
    with pytest.raises(ConfigError, match="temperature"):
        mem.ask(QUESTION, temperature=-0.5)


def test_budget_must_hold_the_prompt_and_one_interval(tiny_checkpoint) -> None:
    # ratio 2, max_frames 10 at 4 tokens/frame: one interval keeps up to 20 VSTs; the prompt
    # takes 14 tokens, so 21 would pass a check that forgot the prompt and drop frames later
    with pytest.raises(ConfigError, match="at least 34"):
        memory(tiny_checkpoint, ratio=2, token_budget=21)
    memory(tiny_checkpoint, ratio=2, token_budget=34)


@pytest.mark.parametrize("background", MODES)
@pytest.mark.parametrize("budget", [None, 50])
def test_failed_compression_leaves_memory_as_it_was(tiny_checkpoint, monkeypatch,
                                                    background: bool, budget: int | None) -> None:
    """A model error in an interval's third window reaches the caller (at once, or at the next
    call through the worker); the memory is exactly as before the interval -- with a budget,
    the intervals it would have evicted included -- and later intervals still go in."""
    import streamvxl.runtime.runtime as runtime_mod

    mem = memory(tiny_checkpoint, background, ratio=2, window=8, token_budget=budget)
    frames = scenes(5, 10, seed=4)
    mem.extend(frames[:30], timestamps=[float(i) for i in range(30)])  # three intervals closed
    before, stats = kv(mem), mem.stats()
    if budget is not None:
        assert stats.intervals_evicted >= 1  # the next interval must evict to fit
    real, calls = runtime_mod.encode_window, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # third window of the next interval
            raise RuntimeError("simulated device failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime_mod, "encode_window", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        mem.extend(frames[30:40], timestamps=[float(i) for i in range(30, 40)])
        mem.wait()  # through the worker, the error reaches this next call
    after = kv(mem)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert mem.intervals == [r for r in mem.intervals if r.id < stats.intervals_closed]
    assert mem.stats().intervals_closed == stats.intervals_closed
    monkeypatch.setattr(runtime_mod, "encode_window", real)
    mem.extend(frames[40:50], timestamps=[float(i) for i in range(40, 50)])  # not wedged
    mem.wait()
    assert mem.stats().intervals_closed == stats.intervals_closed + 1
    mem.close()


def test_frame_with_unusable_embedding_changes_nothing(tiny_checkpoint, monkeypatch) -> None:
    """(Synchronous mode: the error is raised by the push that carried the frame.)"""
    mem = memory(tiny_checkpoint)
    mem.push(scenes(1, 1)[0], timestamp=0.0)
    before = mem.stats()
    real = mem.model.encode_frames

    def zero_cls(pixels):
        out = real(pixels)
        out.embeddings = torch.zeros_like(out.embeddings)  # the segmenter refuses these
        return out

    monkeypatch.setattr(mem.model, "encode_frames", zero_cls)
    with pytest.raises(FrameError):
        mem.push(scenes(1, 1)[0], timestamp=1.0)
    after = mem.stats()
    assert after.frames_pushed == 2  # it was accepted, then refused by the memory
    assert dataclasses.replace(after, frames_pushed=1) == before


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"max_new_tokens": 2.0}, "max_new_tokens"), ({"max_new_tokens": 10**7}, "max_new_tokens"),
    ({"temperature": float("nan")}, "temperature"), ({"temperature": "0.5"}, "temperature"),
])
def test_bad_ask_arguments(tiny_checkpoint, kwargs, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        memory(tiny_checkpoint).ask(QUESTION, **kwargs)


@pytest.mark.parametrize("stamp", ["abc", [1], True])
def test_bad_timestamps(tiny_checkpoint, stamp) -> None:
    with pytest.raises(FrameError, match="timestamp"):
        memory(tiny_checkpoint).push(scenes(1, 1)[0], timestamp=stamp)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"token_budget": -5}, "token_budget"), ({"token_budget": 4000.0}, "token_budget"),
    ({"queue_frames": 2.5}, "queue_frames"), ({"window": 0}, "window"),
    ({"eviction": "recompress"}, "eviction"), ({"overflow": "drop_all"}, "overflow"),
    ({"boundary": {"window": 2}}, "boundary"), ({"prompt": "You are"}, "prompt"),
])
def test_bad_memory_config(kwargs, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        MemoryConfig(**kwargs)


@pytest.mark.parametrize(("name", "text", "fragment"), [
    ("model.safetensors.index.json", "{not json", "safetensors index"),
    ("model.safetensors.index.json", '{"weights": {}}', "weight_map"),
    ("preprocessor_config.json", "[1, 2", "preprocessor config"),
    ("preprocessor_config.json", '{"image_std": [0.2, 0.0, 0.2]}', "image_std"),
])
def test_corrupt_checkpoint_files(tiny_checkpoint, tmp_path, name, text, fragment) -> None:
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / name).write_text(text)
    with pytest.raises(CheckpointError, match=fragment):
        VideoMemory.from_pretrained(folder, device="cpu")


@pytest.mark.parametrize("background", MODES)
def test_questions_from_another_thread_while_frames_arrive(tiny_checkpoint,
                                                           background: bool) -> None:
    """Asks interleave with pushes from another thread without corrupting the memory: the
    result equals the same frames pushed with no questions at all."""
    import threading

    frames = scenes(3, 10, seed=6)
    times = [float(i) for i in range(len(frames))]
    mem = memory(tiny_checkpoint, background)
    errors: list[BaseException] = []
    answers = []
    stop = threading.Event()

    def asker() -> None:
        try:
            while not stop.is_set():
                answers.append(mem.ask(QUESTION, max_new_tokens=2))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    thread = threading.Thread(target=asker)
    thread.start()
    try:
        for f, t in zip(frames, times, strict=True):
            mem.push(f, timestamp=t)
    finally:
        stop.set()
        thread.join()
    assert not errors and answers
    quiet = memory(tiny_checkpoint)
    quiet.extend(frames, timestamps=times)
    assert mem.intervals == quiet.intervals
    torch.testing.assert_close(kv(mem)[0], kv(quiet)[0], atol=1e-5, rtol=0)
