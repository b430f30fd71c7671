"""A shard without Ray: a camera moved between two shards (released here, held there) keeps
its memory exactly -- its open interval stored and logged on the way -- and everything that
crosses to the front is msgpack."""

from __future__ import annotations

import asyncio
import time

import msgpack
import pytest

from streamvxl import ConfigError, Hub
from streamvxl.cluster.shard import CameraShard, event_from
from tests.serve.agent import MEMORY_TOML

QUESTION = {"question": "What is shown?", "max_new_tokens": 6}


def text(log_dir, frames: int = 26) -> str:
    return f"""
[serve]
log_dir = "{log_dir}"
{MEMORY_TOML}[cameras.door]
source = "lavfi:testsrc=size=64x48:rate=4:duration={frames / 4}"
fps = 4
"""


def ask(shard: CameraShard, camera: str = "door") -> dict:
    return msgpack.unpackb(asyncio.run(shard.ask(camera, msgpack.packb(QUESTION))))


def test_a_camera_moves_between_shards_with_its_memory(tiny_checkpoint, tmp_path) -> None:
    with Hub.from_pretrained(tiny_checkpoint, device="cpu") as hub_a, \
            Hub.from_pretrained(tiny_checkpoint, device="cpu") as hub_b:
        a = CameraShard(text(tmp_path), "a", hub_a)
        b = CameraShard(text(tmp_path), "b", hub_b)
        status = msgpack.unpackb(asyncio.run(a.open("door")))
        assert status["camera"] == "door"
        deadline = time.monotonic() + 60
        while a.cameras["door"].state != "ended":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        answer = ask(a)
        # 26 frames: 4 intervals of 6, the last 2 frames closed into a fifth at the file's end
        assert [s["num_frames"] for s in answer["intervals"]] == [6, 6, 6, 6, 2]
        news = msgpack.unpackb(a.drain())
        events = [event_from(msgpack.unpackb(body)) for kind, body in news["news"]]
        assert [e.interval for e in events] == [0, 1, 2, 3, 4]
        assert news["status"]["door"]["intervals_logged"] == 5
        with pytest.raises(Exception, match="one writer|in use|locked"):
            b.hold("door", source=False)  # a still holds its log
        asyncio.run(a.close("door"))
        pinged = msgpack.unpackb(a.ping())
        assert "door" not in pinged["cameras"]
        # a CPU shard: no device tensors to count, its process's resident memory instead
        assert pinged["memory"]["device"] == "cpu" and pinged["memory"]["allocated"] is None
        assert pinged["memory"]["rss"] > 2**20
        assert msgpack.unpackb(a.drain())["status"] == {}
        assert ask(a)["error"]["code"] == "unavailable"
        b.hold("door", source=False)
        moved = ask(b)
        assert moved["text"] == answer["text"] and moved["intervals"] == answer["intervals"]
        with pytest.raises(ConfigError, match="no camera 'gate'"):
            b.hold("gate")
        b.shutdown()


def test_a_shard_needs_a_log_dir(tiny_checkpoint) -> None:
    with pytest.raises(ConfigError, match="log_dir"):
        CameraShard('[cameras.d]\nsource = "x.mp4"\n', "a", hub=object())
