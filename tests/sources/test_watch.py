"""``streamvxl watch`` on a real RTSP camera that goes down and comes back, with a question
typed on stdin while it streams, stopped with Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.sources.rtsp import RtspServer, rtsp_unavailable

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(rtsp_unavailable() is not None, reason=rtsp_unavailable() or "")]


def test_watch_survives_a_restart_and_answers_typed_questions(tiny_checkpoint: Path,
                                                              tmp_path: Path) -> None:
    server = RtspServer()
    server.start()
    cmd = [sys.executable, "-m", "streamvxl", "watch", server.url, "--model",
           str(tiny_checkpoint), "--device", "cpu", "--fps", "4", "--max-new-tokens", "3",
           "--ask", "What is shown?"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()

    def wait_streaming(times: int) -> None:
        end = time.monotonic() + 60
        while sum(": streaming (" in line for line in err_lines) < times:
            assert time.monotonic() < end and proc.poll() is None, "".join(err_lines)[-2000:]
            time.sleep(0.1)

    try:
        wait_streaming(1)
        time.sleep(1.5)
        proc.stdin.write("What moved?\n")
        proc.stdin.flush()
        server.kill()
        time.sleep(2)
        server.start()
        wait_streaming(2)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the memory closes the stream and answers
        proc.stdin.close()
        proc.wait(60)
        out = proc.stdout.read()
    finally:
        proc.kill()
        server.kill()
    reader.join(10)
    assert proc.returncode == 0, "".join(err_lines)[-2000:]
    assert "[asked] Q: What moved?" in out
    assert "[end of stream] Q: What is shown?" in out
    final = err_lines[-1]
    assert "reconnects 1" in final and "gaps 1" in final, final
