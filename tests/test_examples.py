"""The examples run, in a fast mode, on the tiny random checkpoint."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from examples import cameras_on_one_model, mqtt_queries, robot_camera, surveillance_camera
from streamvxl import Hub
from streamvxl.serve.config import parse_config
from streamvxl.world import COLOURS, render
from tests.serve.agent import Running
from tests.serve.broker import Mosquitto, mosquitto_unavailable
from tests.sources.rtsp import RtspServer, rtsp_unavailable

NUMBER = r"(-?\d+(?:\.\d+)?)"


def test_cameras_on_one_model(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = Hub.from_pretrained(tiny_checkpoint, device="cpu")
    assert cameras_on_one_model.main(["--seconds", "3", "--every", "1.5"], hub=hub) == 0
    out = capsys.readouterr().out
    for name in cameras_on_one_model.CAMERAS:
        assert out.count(f"[{name}] ") == 2  # asked twice while streaming
        line = next(x for x in out.splitlines() if x.startswith(f"{name}: "))
        assert int(line.split()[1]) > 0  # frames reached its memory


@pytest.mark.integration
@pytest.mark.skipif(rtsp_unavailable() is not None, reason=rtsp_unavailable() or "")
def test_surveillance_camera(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """12 s of a real RTSP camera that goes down for a moment: both conditions alert once (a
    threshold of -100 turns them on at the first interval and never off), a summary comes at
    4 s and 8 s of video and at the end, and the outage is printed as one gap."""
    hub = Hub.from_pretrained(tiny_checkpoint, device="cpu")
    conditions = ["a person is at the door", "a car is in the driveway"]
    with RtspServer() as server:
        def outage() -> None:  # the camera drops once a few frames are in memory's queue
            end = time.monotonic() + 8.0
            while time.monotonic() < end:
                if "camera" in hub.names and hub["camera"].stats().frames_pushed >= 4:
                    break
                time.sleep(0.05)
            server.kill()
            time.sleep(0.5)
            server.start()

        flaky = threading.Thread(target=outage)
        flaky.start()
        try:
            argv = [server.url, "--seconds", "12", "--every", "4", "--fps", "4",
                    "--max-frames", "6", "--threshold", "-100", "--max-new-tokens", "4"]
            for c in conditions:
                argv += ["--watch", c]
            assert surveillance_camera.main(argv, hub=hub) == 0
        finally:
            flaky.join()
    out = capsys.readouterr().out
    lines = out.splitlines()

    alerts = [m.groups() for x in lines
              if (m := re.fullmatch(rf"ALERT (.+) (on|off) at {NUMBER}-{NUMBER} s "
                                    rf"\(score {NUMBER}\)", x))]
    assert sorted(a[0] for a in alerts) == sorted(conditions), out
    for _, state, t_start, t_end, score in alerts:
        assert state == "on" and 0 <= float(t_start) <= float(t_end) <= 12
        assert float(score) > -99.5

    summaries = [x for x in lines if x.startswith("SUMMARY ")]
    times = [float(m.group(1)) for x in summaries if (m := re.match(rf"SUMMARY at {NUMBER} s", x))]
    assert len(summaries) == 3 and summaries[-1].startswith("SUMMARY at the end: "), out
    assert 4 <= times[0] < 8 <= times[1] < 12, out

    (gap,) = [m for x in lines if (m := re.fullmatch(
        rf"GAP camera offline {NUMBER}-{NUMBER} s \({NUMBER} s: .+\)", x))]
    start, end, seconds = map(float, gap.groups())
    assert 0 < start < end < 12 and 0.3 < seconds < 8, out
    told = [x for x in lines if f"; blind {start:.1f}-{end:.1f} s" in x]
    assert len(told) == 3, out  # every summary after the outage was told of it

    stats = re.search(r"camera: (\d+) frames in memory, \d+ dropped, (\d+) intervals, (\d+) gaps",
                      out)
    assert stats is not None, out
    frames, intervals, gaps = map(int, stats.groups())
    assert frames > 10 and intervals >= frames // 6 and gaps == 1


def test_robot_camera(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The printed ground truth agrees with the rendered pixels, and every answer drew on
    spans that tile the clip, one of them starred as holding the last sighting."""
    frames, fps = 24, robot_camera.FPS
    argv = ["--frames", str(frames), "--model", str(tiny_checkpoint), "--max-new-tokens", "4"]
    assert robot_camera.main(argv) == 0
    out = capsys.readouterr().out

    # the truth from pixels: only the red square has the red colour in this clip
    video = render(robot_camera.robot_episode(frames, 0, "red square"))  # (F, H, W, 3)
    red = np.all(video == np.array(COLOURS["red"], np.uint8), axis=-1)  # (F, H, W)
    shown = np.flatnonzero(red.any(axis=(1, 2)))
    first, last = shown[0] / fps, shown[-1] / fps
    assert shown[-1] < frames - 1  # it left before the end
    ys, xs = np.nonzero(red[shown[-1]])

    blocks = out.split("Q: ")[1:]
    assert [b.splitlines()[0] for b in blocks] == [
        "When did I last see the red square?", "Where did I last see the red square?"]
    for block in blocks:
        assert re.search(r"^  A: .+$", block, re.M)
        truth = re.search(rf"truth: visible {NUMBER}-{NUMBER} s; last seen at {NUMBER} s, "
                          rf"at x={NUMBER}, y={NUMBER}", block)
        assert truth is not None, block
        t_in, t_last, t_seen, x, y = map(float, truth.groups())
        assert (t_in, t_last, t_seen) == (first, last, last)
        assert abs(x - xs.mean()) <= 5 and abs(y - ys.mean()) <= 5  # a half-shown box: ~size/4

        spans = re.findall(rf"{NUMBER}-{NUMBER}(\*?)", block.split("spans: ")[1].splitlines()[0])
        assert spans, block
        bounds = [(float(a), float(b)) for a, b, _ in spans]
        assert bounds[0][0] == 0.0 and bounds[-1][1] == (frames - 1) / fps  # the whole clip
        assert all(a <= b for a, b in bounds)
        assert all(b1 < a2 for (_, b1), (a2, _) in zip(bounds, bounds[1:], strict=False))
        (starred,) = [(a, b) for (a, b), (*_, star) in zip(bounds, spans, strict=True) if star]
        assert starred[0] <= last <= starred[1]


@pytest.mark.integration
def test_mqtt_queries(tiny_checkpoint: Path, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    if why := mosquitto_unavailable():
        pytest.skip(why)
    with Mosquitto(tmp_path / "broker") as broker, \
            Hub.from_pretrained(tiny_checkpoint, device="cpu") as hub:
        config = parse_config(f"""
[mqtt]
port = {broker.port}
[cameras.door]
source = "lavfi:testsrc=size=64x48:rate=4:duration=4"
fps = 4
[[cameras.door.watch]]
condition = "a car is in the picture"
threshold = -1000.0
""")
        running = Running(config, hub)
        door = running.service.cameras["door"]
        while door.state != "ended":
            time.sleep(0.05)
        door.stream.wait()
        direct = door.stream.ask("What is shown?", max_new_tokens=6)
        argv = ["--camera", "door", "--port", str(broker.port), "--max-new-tokens", "6",
                "--rounds", "2", "--every", "0.1", "What is shown?", "Is it raining?"]
        assert mqtt_queries.main(argv) == 0
        assert running.close() == 0
    out = capsys.readouterr().out
    assert out.count("Q (door): What is shown?") == 2 and out.count("Q (door): Is it raining?") == 2
    assert out.count(f"   A: {direct.text}\n") >= 2  # the answer `ask` gives, over MQTT
    spans = re.findall(r"from (\d+) spans", out)
    assert spans == [str(len(direct.intervals))] * 4
