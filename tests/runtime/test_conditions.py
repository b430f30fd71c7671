"""Watch conditions: each stored interval is asked a yes/no question alone; the score is the
answer path's own yes / no log-probabilities, and hysteresis turns it on and off once."""

from __future__ import annotations

import pytest
import torch

from streamvxl import VideoMemory, WatchEvent
from streamvxl.errors import ConfigError
from streamvxl.persist.framing import scan
from streamvxl.persist.log import write_atomic
from streamvxl.runtime.conditions import Condition, as_question, score
from streamvxl.runtime.runtime import Runtime
from tests.runtime.helpers import config, scenes

CONDITION = "a red square is on screen"


@pytest.fixture(scope="module")
def runtime(tiny_checkpoint) -> Runtime:
    return Runtime.from_pretrained(tiny_checkpoint, device="cpu")


def test_the_score_is_the_answer_paths_yes_no_log_odds(runtime, tmp_path) -> None:
    events: list[WatchEvent] = []
    watched = VideoMemory.on(runtime, config(), background=False)
    watched.watch(CONDITION, events.append, threshold=-1e9, hysteresis=0)
    watched.extend(scenes(3, 9), timestamps=[float(i) for i in range(27)])
    watched.flush()
    on, scores = watched.watching[CONDITION]
    assert on and [i for i, _ in scores] == [r.id for r in watched.intervals]
    assert [(e.state, e.interval) for e in events] == [("on", 0)]  # turned on once
    yes, no = runtime.yes_no_ids
    # the reference: a snapshot holding that one interval (the same K/V), reopened and asked
    watched.save(tmp_path / "all.svxl")
    bodies = [body for _, body in scan((tmp_path / "all.svxl").read_bytes()).records]
    for k, (interval_id, value) in enumerate(scores):
        write_atomic(tmp_path / "one.svxl", [bodies[0], bodies[1 + k]])
        alone = VideoMemory.open(tmp_path / "one.svxl", runtime=runtime, background=False)
        assert [r.id for r in alone.intervals] == [interval_id]
        answer = alone.ask(as_question(CONDITION), max_new_tokens=1, output_logits=True)
        assert value == pytest.approx(score(answer.logits[0], yes, no), abs=1e-5)
        alone.close()
    watched.close()


def test_hysteresis_turns_once_each_way() -> None:
    c = Condition("x", torch.zeros(1, dtype=torch.long), threshold=0.0, hysteresis=2.0,
                  callback=None)
    turns = [c.update(s) for s in (0.5, 1.5, 0.2, -0.5, 1.2, -1.5, -3.0, 0.9, 2.0)]
    assert turns == [None, "on", None, None, None, "off", None, None, "on"]


def test_events_carry_the_interval_and_a_bad_callback_does_not_stop_the_stream(runtime) -> None:
    events: list[WatchEvent] = []

    def broken(event: WatchEvent) -> None:
        events.append(event)
        raise RuntimeError("a listener's bug")

    mem = VideoMemory.on(runtime, config(), background=True)
    mem.watch(CONDITION, broken, threshold=-1e9)
    mem.extend(scenes(3, 9), timestamps=[float(i) for i in range(27)])
    mem.flush()
    first = mem.intervals[0]
    assert events and (events[0].t_start, events[0].t_end) == (first.t_start, first.t_end)
    assert mem.stats().intervals_closed == 3  # the stream went on
    mem.unwatch(CONDITION)
    with pytest.raises(KeyError):
        mem.unwatch(CONDITION)
    mem.close()


def test_bad_watches_are_refused(runtime) -> None:
    mem = VideoMemory.on(runtime, config(), background=False)
    with pytest.raises(ConfigError, match="hysteresis"):
        mem.watch(CONDITION, hysteresis=-1)
    with pytest.raises(Exception, match="empty|question"):
        mem.watch("   ")
    mem.watch(CONDITION)
    with pytest.raises(ConfigError, match="watched already"):
        mem.watch(CONDITION)
    mem.close()
