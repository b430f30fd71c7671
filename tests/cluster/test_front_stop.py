"""The front's stop does not wait for a check under way: moving cameras back onto a restarted
shard can take minutes, and a SIGTERM then must still shut down at once (no Ray needed: the
shards and the check are stood in for)."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("ray", reason="pip install 'streamvxl[ray]'")

from streamvxl.cluster.front import ClusterService  # noqa: E402
from streamvxl.serve.config import parse_config  # noqa: E402

TEXT = '[serve]\nlog_dir = "logs"\n[ray]\nshards = 1\ncheck_seconds = 0.05\n' \
       '[cameras.door]\nsource = "x.mp4"\n'


def test_a_stop_cuts_a_long_check_short(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    service = ClusterService(parse_config(TEXT), TEXT)
    checks: list[str] = []

    async def no_shards(indices) -> None:
        return None

    async def slow_check() -> None:
        checks.append("began")
        if len(checks) == 1:
            return  # the first placement is quick
        try:
            await asyncio.sleep(600)  # a rebalance closing cameras one by one
        except asyncio.CancelledError:
            checks.append("cut short")
            raise

    async def shut(bridge, bridge_stop) -> None:
        checks.append("shut down")

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(service, "_deploy", no_shards)
    monkeypatch.setattr(service, "check", slow_check)
    monkeypatch.setattr(service, "_shutdown", shut)

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        while len(checks) < 2:  # the second check is under way
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
        return time.monotonic() - t0

    assert asyncio.run(scenario()) < 1.0
    assert checks == ["began", "began", "cut short", "shut down"]
