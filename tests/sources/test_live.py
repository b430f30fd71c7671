"""Live sources against a real RTSP server (gst-rtsp-server on loopback): frames come, a killed
and restarted server is reconnected with one gap of about the downtime in memory, a stalled one
is detected, a new resolution passes, a slow reader gets the freshest frames, and dead ports,
unknown hosts, silent servers and broken files fail with a typed error within their timeout."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from streamvxl import BoundaryConfig, MemoryConfig, VideoMemory
from streamvxl.errors import SourceError
from streamvxl.sources import LiveSource, Reconnect, open_source
from tests.sources.rtsp import RtspServer, free_port, rtsp_unavailable

needs_rtsp = pytest.mark.skipif(rtsp_unavailable() is not None,
                                reason=rtsp_unavailable() or "")
pytestmark = pytest.mark.integration

QUICK = Reconnect(initial_delay=0.2, max_delay=1.0, stall_timeout=3.0)


def wait_for(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Reader:
    """Reads a source on a thread, like a camera loop: keeps every frame's time and size and
    pushes the frames into a memory if given; any exception is kept, not raised."""

    def __init__(self, source: LiveSource, memory: VideoMemory | None = None) -> None:
        self.source, self.memory = source, memory
        self.times: list[float] = []
        self.sizes: list[tuple[int, int]] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for frame in self.source:
                self.times.append(frame.timestamp)
                self.sizes.append(frame.image.shape[:2])
                if self.memory is not None:
                    self.memory.push(frame)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            self.errors.append(e)

    def stop(self) -> None:
        self.source.close()
        self.thread.join(15)
        assert not self.thread.is_alive()


@needs_rtsp
def test_frames_come_from_a_real_rtsp_server() -> None:
    with RtspServer() as server:
        src = open_source(server.url, fps=5, reconnect=QUICK)
        reader = Reader(src)
        wait_for(lambda: len(reader.times) >= 10, 20, "10 frames")
        stats = src.stats()
        reader.stop()
    assert not reader.errors
    assert reader.sizes[0] == (240, 320)
    assert all(b > a for a, b in zip(reader.times, reader.times[1:], strict=False))
    assert 0.15 < np.median(np.diff(reader.times)) < 0.3  # thinned to 5 fps
    assert stats.state == "streaming" and stats.reconnects == 0 and stats.fps > 2
    states = [e.state for e in src.events(timeout=1)]
    assert states[:2] == ["connecting", "streaming"] and states[-1] == "ended"


@needs_rtsp
def test_a_killed_and_restarted_server_is_a_gap_in_memory(tiny_checkpoint: Path) -> None:
    """The camera goes down hard for ~3 s and comes back: the source reconnects by itself
    (one reconnect counted), no exception reaches the reader, the memory records one gap of
    about the real downtime, and the frames after the restart reach the memory."""
    config = MemoryConfig(ratio=2, boundary=BoundaryConfig(window=2, min_frames=3, max_frames=8))
    mem = VideoMemory.from_pretrained(tiny_checkpoint, config=config, device="cpu")
    server = RtspServer()
    server.start()
    src = open_source(server.url, fps=4, reconnect=QUICK)
    reader = Reader(src, mem)
    try:
        wait_for(lambda: len(reader.times) >= 8, 20, "frames before the outage")
        down = server.kill()
        wait_for(lambda: src.state == "reconnecting", 10, "the drop to be noticed")
        time.sleep(3.0)
        up = server.start()
        before = len(reader.times)
        wait_for(lambda: len(reader.times) >= before + 8, 20, "frames after the restart")
    finally:
        reader.stop()
        server.kill()
    assert not reader.errors
    stats = src.stats()
    assert stats.reconnects == 1
    assert abs(stats.seconds_offline - (up - down)) < 2.0
    mem.wait()
    (gap,) = mem.stats().gaps
    assert abs(gap.seconds - (up - down)) < 2.0, (gap, up - down)
    assert gap.start < gap.end <= reader.times[-1]
    assert mem.stats().frames_seen == len(reader.times)  # every frame, before and after
    answer = mem.ask("What happened?", max_new_tokens=2)
    assert answer.gaps == (gap,)
    mem.close()


@needs_rtsp
def test_a_stalled_server_is_noticed_and_reconnected() -> None:
    with RtspServer() as server:
        src = open_source(server.url, fps=5, reconnect=QUICK)
        reader = Reader(src)
        wait_for(lambda: len(reader.times) >= 5, 20, "frames")
        server.pause()  # connected, silent
        paused = time.monotonic()
        wait_for(lambda: src.stats().stalls == 1, 10, "the stall")
        noticed = time.monotonic() - paused
        server.resume()
        before = len(reader.times)
        wait_for(lambda: len(reader.times) >= before + 5, 20, "frames after the stall")
        reader.stop()
    assert not reader.errors
    assert noticed < QUICK.stall_timeout + 2.0
    assert "stalled" in [e.state for e in src.events(timeout=1)]


@needs_rtsp
def test_a_new_resolution_and_codec_after_a_restart_pass() -> None:
    with RtspServer() as server:
        src = open_source(server.url, fps=5, reconnect=QUICK)
        reader = Reader(src)
        wait_for(lambda: len(reader.times) >= 3, 20, "frames")
        server.kill()
        server.start(width=160, height=120)
        wait_for(lambda: reader.sizes and reader.sizes[-1] == (120, 160), 20, "smaller frames")
        server.kill()
        server.start(codec="vp8", width=256, height=192)  # H.264 -> VP8
        wait_for(lambda: reader.sizes and reader.sizes[-1] == (192, 256), 20, "VP8 frames")
        reader.stop()
    assert not reader.errors
    assert reader.sizes[0] == (240, 320) and src.stats().reconnects == 2


@needs_rtsp
def test_a_slow_reader_gets_the_freshest_frames() -> None:
    with RtspServer() as server:
        src = open_source(server.url, buffer=3, reconnect=QUICK)  # every frame, 10 fps
        first = next(iter(src))
        time.sleep(2.0)  # the reader is busy elsewhere; the capture goes on
        frame = next(iter(src))
        now = src.now()
        stats = src.stats()
        src.close()
    assert stats.frames_dropped >= 10  # ~20 frames came, 3 fit
    assert now - frame.timestamp < 0.5 and frame.timestamp - first.timestamp > 1.5


# -- what fails, and how fast ------------------------------------------------------------------
def _fails_within(uri: str, seconds: float, *words: str, **kwargs: object) -> SourceError:
    t0 = time.monotonic()
    src = open_source(uri, reconnect=False, **kwargs)
    with pytest.raises(SourceError) as info:
        list(src)
    took = time.monotonic() - t0
    assert took < seconds, took
    for word in words:
        assert word in str(info.value)
    return info.value


def test_a_dead_port_fails_at_once_or_keeps_trying() -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/cam"
    _fails_within(url, 3.0, "Connection refused", "check the URL")
    src = open_source(url, reconnect=Reconnect(initial_delay=0.1, max_delay=0.2,
                                               max_attempts=4))
    with pytest.raises(SourceError, match="after 4 attempts"):
        list(src)
    assert [e.state for e in src.events(timeout=1)].count("reconnecting") == 3


def test_an_unknown_host_fails() -> None:
    _fails_within("rtsp://no-such-camera.invalid:554/cam", 5.0, "no-such-camera.invalid",
                  timeout=3.0)


def test_a_server_that_never_answers_fails_within_the_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        held: list[socket.socket] = []
        accept = threading.Thread(target=lambda: held.append(listener.accept()[0]),
                                  daemon=True)
        accept.start()
        _fails_within(f"rtsp://127.0.0.1:{port}/cam", 2.0 + 1.5, "check the URL", timeout=2.0)
        for conn in held:
            conn.close()


def test_random_bytes_are_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "camera.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, np.uint8).tobytes())
    with pytest.raises(SourceError, match="camera.mp4"):
        list(open_source(path))


def test_a_truncated_mp4_is_a_source_error(tmp_path: Path) -> None:
    import av

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        rng = np.random.default_rng(1)
        for _ in range(30):
            image = rng.integers(0, 256, (48, 64, 3), np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    data = path.read_bytes()
    for keep in (len(data) // 3, len(data) // 2, 40):
        cut = tmp_path / f"cut{keep}.mp4"
        cut.write_bytes(data[:keep])
        with pytest.raises(SourceError, match=f"cut{keep}.mp4"):
            list(open_source(cut))


def test_files_are_never_reopened(tmp_path: Path) -> None:
    from streamvxl.errors import ConfigError

    with pytest.raises(ConfigError, match="read once"):
        open_source("lavfi:testsrc=duration=1", reconnect=True)
