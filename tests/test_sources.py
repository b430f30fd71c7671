"""open_source delivers a file's frames in order with its timestamps, thins to fps without
duplicating, routes each URI kind to the right FFmpeg input, and fails with SourceError."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from streamvxl.errors import ConfigError, SourceError
from streamvxl.sources import FpsSampler, LiveSource, Reconnect, open_source

H, W = 48, 64
RATE = 10  # frames per second of the test clip
N = 20  # 2 s


def _level(i: int) -> int:
    """Gray level painted on frame i; 12 apart so H.264 noise (±2) cannot confuse neighbours."""
    return 10 + 12 * i


def _frame_number(image: np.ndarray) -> int:
    return round((float(image.mean()) - 10) / 12)


def _write_mp4(path: Path, pictures: list[np.ndarray]) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for picture in pictures:
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of 64x48 H.264 at 10 fps; frame i is a flat gray of level _level(i)."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    _write_mp4(path, [np.full((H, W, 3), _level(i), np.uint8) for i in range(N)])
    return path


@pytest.fixture(scope="module")
def all_frames(clip: Path) -> list:
    return list(open_source(clip))


def _open_fds_to(path: Path) -> list[str]:
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():
        pytest.skip("needs /proc to list open files")
    targets = []
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):  # the fd of the listing itself is gone by now
            targets.append(os.readlink(fd_dir / fd))
    return [t for t in targets if t == str(path.resolve())]


# ---- reading a file -----------------------------------------------------------------------------


def test_file_gives_every_frame_in_order_with_its_timestamp(clip: Path, all_frames: list) -> None:
    assert [f.index for f in all_frames] == list(range(N))
    assert [_frame_number(f.image) for f in all_frames] == list(range(N))
    assert [f.timestamp for f in all_frames] == pytest.approx([i / RATE for i in range(N)])
    assert all(f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 for f in all_frames)


def test_properties_describe_the_stream(clip: Path) -> None:
    with open_source(clip) as src:
        assert (src.uri, src.native_fps, src.width, src.height) == (str(clip), 10.0, W, H)


def test_fps_half_the_source_rate_keeps_every_other_frame(clip: Path, all_frames: list) -> None:
    sampled = list(open_source(clip, fps=5))
    assert [f.index for f in sampled] == list(range(N // 2))
    assert [f.timestamp for f in sampled] == pytest.approx([0.2 * k for k in range(N // 2)])
    by_time = {round(f.timestamp, 3): f.image for f in all_frames}
    for f in sampled:  # the very frames of the full-rate stream, not re-encoded or blended
        np.testing.assert_array_equal(f.image, by_time[round(f.timestamp, 3)])


@pytest.mark.parametrize("fps", [1, 2.5, 3, 7, 9.9])
def test_fps_bounds_the_output_rate(clip: Path, fps: float) -> None:
    times = [f.timestamp for f in open_source(clip, fps=fps)]
    span = (N - 1) / RATE
    # At most one frame per sampling instant t0 + k/fps within the clip, and none skipped.
    assert len(times) <= math.floor(span * fps + 0.5) + 1
    assert len(times) >= math.floor(span * fps)
    gaps = np.diff(times)
    assert gaps.min() >= 1 / fps - 0.5 / RATE - 1e-9  # never faster than fps (up to slack)


def test_fps_above_the_source_rate_never_duplicates(clip: Path, all_frames: list) -> None:
    sampled = list(open_source(clip, fps=100))
    assert [f.timestamp for f in sampled] == [f.timestamp for f in all_frames]
    assert [_frame_number(f.image) for f in sampled] == list(range(N))


def test_max_frames_stops_early(clip: Path) -> None:
    assert [f.index for f in open_source(clip, max_frames=3)] == [0, 1, 2]
    sampled = list(open_source(clip, fps=5, max_frames=4))
    assert [f.timestamp for f in sampled] == pytest.approx([0.0, 0.2, 0.4, 0.6])


def test_lavfi_graph() -> None:
    with open_source("lavfi:testsrc=size=64x48:rate=10:duration=1") as src:
        frames = list(src)
        assert src.native_fps == 10.0
    assert len(frames) == 10
    assert all(f.image.shape == (H, W, 3) for f in frames)
    assert [f.timestamp for f in frames] == pytest.approx([i / 10 for i in range(10)])


def test_realtime_delivers_no_faster_than_the_timestamps() -> None:
    arrivals, stamps = [], []
    for f in open_source("lavfi:testsrc=size=64x48:rate=10:duration=0.5", realtime=True):
        arrivals.append(time.monotonic())
        stamps.append(f.timestamp)
    assert len(stamps) == 5
    for arrival, stamp in zip(arrivals, stamps, strict=True):
        # Lower bound only: a slow machine may deliver late, never early.
        assert arrival - arrivals[0] >= stamp - stamps[0] - 0.005


# ---- closing ------------------------------------------------------------------------------------


def test_context_manager_releases_the_file(clip: Path) -> None:
    with open_source(clip) as src:
        iterator = iter(src)
        next(iterator)  # suspended mid-stream when the block exits
        assert _open_fds_to(clip)
    assert src.closed
    assert not _open_fds_to(clip)
    with pytest.raises(SourceError, match="closed"):
        iter(src)


def test_reading_to_the_end_releases_the_file(clip: Path) -> None:
    src = open_source(clip)
    assert len(list(src)) == N
    assert src.closed and not _open_fds_to(clip)


def test_a_source_is_read_once(clip: Path) -> None:
    with open_source(clip) as src:
        iter(src)
        with pytest.raises(SourceError, match="open_source"):
            iter(src)


def test_close_from_another_thread_stops_an_endless_source() -> None:
    src = open_source("lavfi:testsrc=size=64x48:rate=10", realtime=True)  # never ends by itself
    first = threading.Event()
    delivered: list[int] = []

    def read() -> None:
        for f in src:
            delivered.append(f.index)
            first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first.wait(5)
    src.close()
    reader.join(5)
    assert not reader.is_alive()
    assert delivered == list(range(len(delivered)))


# ---- errors -------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        open_source(tmp_path / "nope.mp4")


def test_file_that_is_not_video(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is a text file, not a video\n" * 20)
    with pytest.raises(SourceError) as info:
        open_source(fake)
    assert str(fake) in str(info.value)
    assert "Invalid data" in str(info.value)  # FFmpeg's own reason is kept


def test_no_video_stream() -> None:
    with pytest.raises(SourceError, match="no video stream.*audio"):
        open_source("lavfi:sine=frequency=440:duration=0.1")


def test_decode_error_mid_stream_says_how_far_it_got(tmp_path: Path) -> None:
    # Noise frames make each packet big, so garbage in the middle of the media data lands
    # inside a packet the decoder must reject (the index at the end of the file stays intact).
    rng = np.random.default_rng(0)
    path = tmp_path / "corrupt.mp4"
    _write_mp4(path, [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(N)])
    data = bytearray(path.read_bytes())
    middle = (data.find(b"mdat") + data.find(b"moov")) // 2
    data[middle : middle + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))

    delivered = []
    with pytest.raises(SourceError) as info:
        for f in open_source(path):
            delivered.append(f)
    assert 0 < len(delivered) < N
    assert f"after {len(delivered)} frames were delivered" in str(info.value)


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf")])
def test_non_positive_fps_is_a_config_error(clip: Path, fps: float) -> None:
    with pytest.raises(ConfigError, match="fps"):
        open_source(clip, fps=fps)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(max_frames=0), "max_frames"),
        (dict(max_frames=2.5), "max_frames"),
        (dict(timeout=0), "timeout"),
    ],
)
def test_other_bad_settings_are_config_errors(clip: Path, kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        open_source(clip, **kwargs)


def test_non_path_uri_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="/dev/video0"):
        open_source(0)  # type: ignore[arg-type]


# ---- routing: which FFmpeg input each URI kind becomes (no network or camera needed) ------------


class _Opened(Exception):
    """Raised by the fake av.open to stop after recording its arguments."""


@pytest.fixture
def av_open_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    calls: list[dict] = []

    def fake_open(file: str, **kwargs: object) -> None:
        calls.append(dict(file=file, **kwargs))
        raise _Opened

    monkeypatch.setattr(av, "open", fake_open)
    return calls


@pytest.mark.parametrize(
    ("uri", "options", "expected"),
    [
        ("rtsp://cam.local/stream", None,
         dict(format=None, options={"rtsp_transport": "tcp", "analyzeduration": "500000"})),
        (
            "rtsp://cam.local/stream",
            {"rtsp_transport": "udp", "analyzeduration": "2000000"},
            dict(format=None, options={"rtsp_transport": "udp", "analyzeduration": "2000000"}),
        ),
        ("https://example.com/live.m3u8", {"a": "1"},
         dict(format=None, options={"a": "1", "analyzeduration": "500000"})),
        ("udp://239.0.0.1:1234", None, dict(format=None, options={"analyzeduration": "500000"})),
        ("/dev/video0", None, dict(format="v4l2", options={})),
        ("lavfi:testsrc=rate=5", None, dict(file="testsrc=rate=5", format="lavfi")),
    ],
)
def test_uri_is_opened_through_the_right_input(
    av_open_calls: list[dict], uri: str, options: dict | None, expected: dict
) -> None:
    given = None if options is None else dict(options)
    if uri.startswith("lavfi:"):  # read in the caller's thread: opened at once
        with pytest.raises(_Opened):
            open_source(uri, options=given, timeout=3.5)
        timeout: float | tuple[float, float] = 3.5
    else:  # live: opened on its capture thread, whose failure ends the iteration
        src = open_source(uri, options=given, timeout=3.5, reconnect=False)
        assert isinstance(src, LiveSource)
        with pytest.raises(SourceError):
            list(src)
        src.join(5)
        timeout = (3.5, Reconnect().stall_timeout / 2)  # open, then each read (a stall)
    (call,) = av_open_calls
    assert call["timeout"] == timeout
    want = {"file": uri} | expected
    assert {key: call[key] for key in want} == want
    assert given == options  # the caller's dict is not modified


def test_explicit_format_wins(av_open_calls: list[dict]) -> None:
    src = open_source("0", format="avfoundation", reconnect=False)  # no file check for a device
    with pytest.raises(SourceError):
        list(src)
    assert av_open_calls[0]["format"] == "avfoundation"


# ---- the sampler on its own ---------------------------------------------------------------------


def test_sampler_thins_a_fast_source_to_the_target_rate() -> None:
    sampler = FpsSampler(fps=10, source_fps=30)
    kept = [i for i in range(90) if sampler.keep(i / 30)]
    assert kept == list(range(0, 90, 3))


@pytest.mark.parametrize(("source_fps", "fps"), [(30, 7), (25, 10), (29.97, 12.5), (60, 59)])
def test_sampler_rate_matches_the_target(source_fps: float, fps: float) -> None:
    sampler = FpsSampler(fps=fps, source_fps=source_fps)
    times = [i / source_fps for i in range(round(10 * source_fps))]
    kept = [t for t in times if sampler.keep(t)]
    assert abs(len(kept) - times[-1] * fps) <= 1


@pytest.mark.parametrize("source_fps", [30, None])
def test_sampler_keeps_every_frame_of_a_jittery_source_at_its_own_rate(source_fps) -> None:
    # A 30 fps camera whose timestamps wobble by up to 4 ms must not lose frames at fps=30.
    rng = np.random.default_rng(1)
    times = np.arange(300) / 30 + rng.uniform(-0.004, 0.004, 300)
    sampler = FpsSampler(fps=30, source_fps=source_fps)
    assert all(sampler.keep(float(t)) for t in times)


def test_sampler_rejects_bad_fps() -> None:
    with pytest.raises(ConfigError):
        FpsSampler(fps=0)
