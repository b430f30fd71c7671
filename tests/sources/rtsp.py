"""A real RTSP server for the tests (``rtsp_server.py`` under Debian's Python with GStreamer),
started on a free loopback port, killed, paused and restarted like a flaky camera."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).with_name("rtsp_server.py")
PACKAGES = ("gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base "
            "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly")


@functools.cache
def rtsp_unavailable() -> str | None:
    """Why no RTSP server can run here, or None (``make test`` installs the packages)."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"no {SYSTEM_PYTHON} (the system Python that runs gst-rtsp-server)"
    probe = ("import gi; gi.require_version('Gst', '1.0'); "
             "gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst; Gst.init(None); "
             "assert Gst.ElementFactory.find('x264enc'), 'x264enc'")
    result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True,
                            timeout=60)
    if result.returncode:
        return (f"gst-rtsp-server is not installed ({result.stderr.strip().splitlines()[-1:]}); "
                f"apt-get install {PACKAGES}")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """One camera at ``url``; `start` it, `kill` it (SIGKILL), `pause` / `resume` it."""

    def __init__(self, port: int | None = None, path: str = "/cam", **options: object) -> None:
        self.port, self.path, self.options = port or free_port(), path, options
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self, **options: object) -> float:
        """Start (with other ``options`` than before, if given); returns when it listens, the
        `time.monotonic()` of that moment."""
        self.options.update(options)
        args = [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port), "--path", self.path]
        for key, value in self.options.items():
            args += [f"--{key}", str(value)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()  # "ready" once it listens
        if line.strip() != "ready":
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.kill()
            raise RuntimeError(f"the RTSP server did not start: {line!r} {err}")
        return time.monotonic()

    def kill(self) -> float:
        """Take the camera down hard; returns the `time.monotonic()` of that moment."""
        now = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        return now

    def pause(self) -> None:
        """The server stays connected but sends nothing (a stalled camera)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
        self.kill()
