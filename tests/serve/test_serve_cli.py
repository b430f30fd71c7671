"""``streamvxl serve CONFIG.toml`` as a real process: SIGTERM stops it cleanly (offline said,
exit 0), a restart reopens every camera's memory from its log, SIGKILL leaves the last will, and
a bad configuration exits 2 naming the key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serve.agent import MEMORY_TOML, Agent, decode, next_message
from tests.serve.broker import Mosquitto, mosquitto_unavailable

pytestmark = pytest.mark.integration
if why := mosquitto_unavailable():
    pytest.skip(why, allow_module_level=True)


def write_config(path: Path, checkpoint: Path, port: int, log_dir: Path) -> Path:
    path.write_text(f"""
[model]
path = "{checkpoint}"
device = "cpu"
[serve]
health_seconds = 0.5
log_dir = "{log_dir}"
{MEMORY_TOML}[mqtt]
port = {port}
prefix = "plant"
[cameras.door]
source = "lavfi:testsrc=size=64x48:rate=4:duration=6"
fps = 4
""")
    return path


def start(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "streamvxl", "serve", str(config)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def status_where(statuses, condition, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = decode(next_message(statuses, max(0.1, deadline - time.monotonic())).payload)
        if condition(status):
            return status


def test_sigterm_restart_and_sigkill(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        config = write_config(tmp_path / "serve.toml", tiny_checkpoint, broker.port,
                              tmp_path / "memories")
        agent = Agent(broker.port)
        available = agent.listen("plant/available")
        statuses = agent.listen("plant/door/status")
        first = start(config, tmp_path / "first.log")
        try:
            assert next_message(available, 60).payload == b"online"
            done = status_where(statuses, lambda s: s["state"] == "ended"
                                and s["intervals_logged"] == 4)
            assert done["frames_seen"] == 24
            before = agent.ask("plant/door/ask", {"question": "What is shown?",
                                                  "max_new_tokens": 4})
            assert len(before["intervals"]) == 4
            deadline = time.monotonic() + 30  # the health line, every 0.5 s
            while "door: ended" not in (tmp_path / "first.log").read_text():
                assert time.monotonic() < deadline, "no health line"
                time.sleep(0.1)
            first.send_signal(signal.SIGTERM)
            assert first.wait(60) == 0
        finally:
            first.kill()
        said = (tmp_path / "first.log").read_text()
        assert "SIGTERM: shutting down" in said and "stopped" in said
        assert next_message(available, 10).payload == b"offline"  # said, not the will

        second = start(config, tmp_path / "second.log")
        try:
            assert next_message(available, 60).payload == b"online"
            status_where(statuses, lambda s: s["state"] == "ended" and s["intervals_logged"] == 8)
            after = agent.ask("plant/door/ask", {"question": "What is shown?",
                                                 "max_new_tokens": 4})
            # the first run's intervals, reopened exactly, then this run's, later in time
            assert after["intervals"][:4] == before["intervals"]
            assert len(after["intervals"]) == 8
            assert after["intervals"][4]["t_start"] > before["intervals"][-1]["t_end"]
            second.kill()  # SIGKILL: no goodbye; the broker says the last will
            second.wait(10)
            assert next_message(available, 30).payload == b"offline"
        finally:
            second.kill()
        assert "memory reopened" in (tmp_path / "second.log").read_text()
        agent.close()


def test_a_bad_configuration_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[cameras.door]\nsource = 'x.mp4'\nfps = -1\n")
    result = subprocess.run([sys.executable, "-m", "streamvxl", "serve", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "ConfigError: bad.toml: [cameras.door] fps = -1: must be a number > 0" in result.stderr
