"""`benchmarks.cluster_load_bench` end to end on the CPU: real Ray Serve replicas reading real
H.264 files in real time. What it reports is held to what must be true of such a run: cameras at
1 fps are read at 1 frame per second each, a load this light drops nothing, every question is
answered, and a SIGKILLed replica's cameras answer again on the survivor with every interval
their logs held."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="pip install 'streamvxl[ray]'")

from benchmarks.cluster_load_bench import main  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_cpu_shards_hold_two_cameras_and_fail_over(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    assert main(["--model", "tiny", "--checkpoint", str(tmp_path / "ckpt"), "--shards", "2",
                 "--cpus-per-shard", "0.5", "--ray-cpus", "4", "--cameras", "2",
                 "--warmup", "5", "--seconds", "15", "--ask-rate", "1", "--max-new-tokens", "4",
                 "--max-ttft", "60000", "--place-timeout", "240", "--failover",
                 "--work", str(tmp_path / "work"), "--json", str(out)]) == 0
    import ray

    assert not ray.is_initialized()  # nothing of the run is left to start Ray again
    run = json.loads(out.read_text())
    (row,) = run["live"]
    assert run["held"] == [2]
    assert row["dropped"] == 0 and row["ended early"] == 0 and row["ask errors"] == 0
    assert row["asks"] >= 3 and row["TTFT p50 ms"] <= row["round trip p50 ms"]
    # two real-time cameras at 1 fps: two frames a second, give or take a frame at each end
    assert 1.6 <= row["frames/s read"] <= 2.4 and row["short of real time"] <= 2
    assert row["shard-0 host RSS GiB"] > 0 and row["shard-1 host RSS GiB"] > 0
    fail = run["failover"]
    assert fail["cameras moved"] >= 1 and fail["answered again"] == fail["cameras moved"]
    assert fail["intervals logged before (their statuses)"] >= 1 and fail["intervals lost"] == 0
    assert (tmp_path / "ckpt" / "config.json").exists()  # the shape's checkpoint, written once
