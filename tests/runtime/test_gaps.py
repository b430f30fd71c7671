"""Gaps in memory: what a source reports, what a jump in time reveals, what the queue dropped;
shown in stats and answers, and told to the model before the question."""

from __future__ import annotations

import pytest

from streamvxl import Frame, MemoryConfig
from streamvxl.frames import Gap
from streamvxl.prompt import PromptTemplate
from tests.runtime.helpers import QUESTION, memory, scenes, worker_held


def asked_ids(mem, monkeypatch) -> list[list[int]]:
    """The question ids every answer of ``mem`` is prefilled with, as they are asked."""
    seen: list[list[int]] = []
    real = mem.runtime.decode_steps

    def spy(store, raw, question_ids, *args, **kwargs):
        seen.append(question_ids.tolist())
        return real(store, raw, question_ids, *args, **kwargs)

    monkeypatch.setattr(mem.runtime, "decode_steps", spy)
    return seen


@pytest.mark.parametrize("background", [False, True], ids=["sync", "worker"])
def test_a_reported_gap_is_kept_shown_and_told(tiny_checkpoint, monkeypatch,
                                               background: bool) -> None:
    mem = memory(tiny_checkpoint, background)
    images = scenes(2, 6)
    outage = Gap(5.0, 27.5, "the connection was lost")
    for i, image in enumerate(images):
        ts = float(i) if i < 6 else 27.5 + (i - 6)
        mem.push(Frame(image, ts, i, live=True, gap=outage if i == 6 else None))
    mem.wait()
    assert mem.stats().gaps == (outage,)
    ids = asked_ids(mem, monkeypatch)
    answer = mem.ask(QUESTION, max_new_tokens=2)
    assert answer.gaps == (outage,)
    told = PromptTemplate().format_question(QUESTION, [outage])
    assert "saw nothing from 5.0 s to 27.5 s (the connection was lost)" in told
    assert ids == [mem.tokenizer(told, add_special_tokens=False)["input_ids"]]
    mem.close()


def test_a_jump_in_time_is_a_gap(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint, background=False)
    images = scenes(3, 6)
    stamps = [float(i) for i in range(8)] + [30.0 + 1.1 * i for i in range(10)]
    mem.extend(images[:18], timestamps=stamps)
    # 1-s spacing: the automatic threshold is max(2 s, 4 x 1 s); 7 -> 30 s is a gap, the 1.1-s
    # steps after it are not
    assert mem.stats().gaps == (Gap(7.0, 30.0, "no frames came"),)


def test_the_threshold_can_be_set(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint, background=False, gap_seconds=1.5)
    mem.extend(scenes(1, 4), timestamps=[0.0, 1.0, 3.0, 4.0])
    assert [(g.start, g.end) for g in mem.stats().gaps] == [(1.0, 3.0)]
    with pytest.raises(Exception, match="gap_seconds"):
        MemoryConfig(gap_seconds=0)


def test_frames_the_queue_dropped_are_named_as_the_cause(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint, queue_frames=3, overflow="drop_oldest")
    images = scenes(3, 7)
    for i in range(5):  # one at a time: none of these may meet a full queue
        mem.push(images[i], timestamp=float(i))
        mem.wait()
    with worker_held(mem):
        for i in range(5, 21):
            mem.push(images[i], timestamp=float(i))
    mem.wait()
    assert mem.stats().frames_dropped == 13
    assert mem.stats().gaps == (Gap(4.0, 18.0, "13 frames dropped: the memory fell behind"),)
    mem.close()


def test_gaps_leave_with_the_intervals_they_came_before(tiny_checkpoint) -> None:
    mem = memory(tiny_checkpoint, background=False, token_budget=50, gap_seconds=5.0)
    images = scenes(8, 9, seed=3)
    stamps = [float(i) for i in range(9)] + [100.0 + i for i in range(63)]
    mem.extend(images, timestamps=stamps)
    s = mem.stats()
    assert s.intervals_evicted > 0 and mem.intervals[0].t_start > 8.0
    assert s.gaps == ()  # the 8 -> 100 s gap came before everything the memory still holds
    mem.reset()
    assert mem.stats().gaps == ()


def test_a_bad_gap_template_is_refused() -> None:
    with pytest.raises(Exception, match="PromptTemplate.gap"):
        PromptTemplate(gap="offline from {begin}")


def test_training_finds_the_gaps_the_memory_finds(tiny_checkpoint) -> None:
    """`streamvxl.gaps.found_gaps` (what training and evaluation tell the model) against a
    memory fed the same timestamps: jittered rates, stalls just over and under the threshold,
    and a rate change that moves the threshold (4.5 s is a gap at 1 s a frame, 3.9 s is not)."""
    import numpy as np

    from streamvxl.gaps import found_gaps

    rng = np.random.default_rng(5)
    steps = np.concatenate([rng.uniform(0.4, 0.6, 10), [2.6], rng.uniform(0.4, 0.6, 6), [1.9],
                            rng.uniform(0.9, 1.1, 20), [4.5, 3.9, 1.0, 1.0]])
    stamps = [0.0, *np.cumsum(steps).tolist()]
    images = scenes(4, len(stamps) // 4 + 1)[:len(stamps)]
    mem = memory(tiny_checkpoint, background=False)
    mem.extend(images, timestamps=stamps)
    found = found_gaps(stamps)
    assert len(found) >= 2  # the case means something: the 2.6-s stall and the 4.5-s one
    assert mem.stats().gaps == tuple(found)
    mem.close()
