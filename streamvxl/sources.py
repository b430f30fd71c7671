"""Video sources: files, FFmpeg lavfi graphs, network streams and cameras, read through PyAV.

``open_source`` picks how to open a URI and returns a ``FrameSource``: an iterable of ``Frame``
objects that is also a context manager. It can thin the stream to a target rate (``fps``) with
``FpsSampler``, stop after ``max_frames``, and pace a file at its natural speed (``realtime``) to
stand in for a live camera.

URI forms:

* a local file, any container FFmpeg reads: ``"clip.mp4"``;
* an FFmpeg lavfi graph: ``"lavfi:testsrc=size=64x48:rate=10:duration=2"``;
* a network stream: ``rtsp://``, ``rtsps://``, ``http(s)://``, ``rtmp(s)://``, ``udp://``,
  ``tcp://``, ``srt://``, ``rtp://`` (RTSP defaults to TCP transport, which survives packet loss
  and NAT far better than UDP);
* a V4L2 camera: ``"/dev/video0"``. Other capture devices work through ``format=``
  (e.g. ``open_source("0", format="avfoundation")`` on macOS).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import re
import threading
import time
from collections.abc import Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from streamvxl.errors import ConfigError, SourceError
from streamvxl.frames import Frame, to_rgb_uint8

if TYPE_CHECKING:
    import av.container
    import av.video

logger = logging.getLogger(__name__)

NETWORK_SCHEMES = frozenset(
    {"rtsp", "rtsps", "http", "https", "rtmp", "rtmps", "udp", "tcp", "srt", "rtp"}
)
"""URI schemes opened as network streams (options and timeout passed, no file check)."""

_LAVFI_PREFIX = "lavfi:"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class FpsSampler:
    """Keeps a subsequence of frames whose rate is at most ``fps``, never duplicating any.

    The sampling instants are ``t0 + k / fps`` where ``t0`` is the first timestamp seen. A frame
    is kept when it is the first to reach the next instant not yet taken; so a faster source is
    thinned to about ``fps`` and a slower one passes unchanged. A frame counts as reaching an
    instant when it is less than half a source frame before it (capped at half a sampling
    period): without that slack, a jittery 30 fps camera sampled at ``fps=30`` would drop every
    frame that arrives a millisecond early.

    Args:
        fps: Target rate in frames per second, > 0.
        source_fps: The source's nominal rate, used to size the slack. If None, the last
            observed interval between timestamps is used instead.

    Raises:
        ConfigError: ``fps`` is not a positive finite number.

    Example:
        >>> sampler = FpsSampler(fps=5)
        >>> [t for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5) if sampler.keep(t)]
        [0.0, 0.2, 0.4]
    """

    def __init__(self, fps: float, source_fps: float | None = None) -> None:
        self.fps = _check_fps(fps)
        self.source_fps = source_fps if source_fps and source_fps > 0 else None
        self._t0: float | None = None
        self._previous: float | None = None
        self._next_slot = 0  # index k of the next instant t0 + k / fps still to be taken

    def keep(self, timestamp: float) -> bool:
        """Whether the frame at ``timestamp`` (seconds) belongs to the thinned stream."""
        if self._t0 is None:
            self._t0 = self._previous = timestamp
            self._next_slot = 1
            return True
        if self.source_fps is not None:
            source_period = 1.0 / self.source_fps
        else:
            interval = timestamp - self._previous
            source_period = interval if interval > 0 else 0.0
        self._previous = timestamp
        slack = 0.5 * min(source_period, 1.0 / self.fps)  # seconds
        slot = (timestamp - self._t0 + slack) * self.fps  # position in sampling periods
        if slot < self._next_slot:
            return False
        # Index-based instants: t0 + k / fps never accumulates rounding drift.
        self._next_slot = math.floor(slot) + 1
        return True


class FrameSource:
    """An open video source: iterate it for ``Frame``s, close it when done (or use ``with``).

    Iterate once: a source is a stream, not a list. Frames carry the source's presentation
    times in seconds and ``index`` 0, 1, 2, ... over the frames delivered. Iteration ends at
    the end of the source or after ``max_frames``, and then releases the source.

    ``close()`` may be called from another thread to stop a reader: the reading thread stops
    and releases the source when it asks for its next frame (network reads are bounded by the
    ``timeout`` given to ``open_source``; a realtime pause ends at once). Closing from the
    reading thread, or when nobody is iterating, releases the source immediately.

    Created by ``open_source``; not meant to be constructed directly.

    Example:
        >>> with open_source("lavfi:testsrc=size=64x48:rate=10:duration=1", fps=5) as src:
        ...     [(f.index, round(f.timestamp, 1)) for f in src]
        [(0, 0.0), (1, 0.2), (2, 0.4), (3, 0.6), (4, 0.8)]
    """

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.VideoStream,
        uri: str,
        *,
        fps: float | None,
        max_frames: int | None,
        realtime: bool,
        live: bool = False,
    ) -> None:
        self._container = container
        self._live = live or realtime
        self._stream = stream
        self._uri = uri
        self._fps = fps
        self._max_frames = max_frames
        self._realtime = realtime
        self._closed = False
        self._released = False
        self._started = False
        self._generator: Generator[Frame, None, None] | None = None
        self._reader: int | None = None  # thread id that iterates, once iteration has begun
        # Read the stream's header fields now: they must stay readable after close().
        rate = stream.average_rate
        self._native_fps = float(rate) if rate else None
        self._width = stream.codec_context.width or None
        self._height = stream.codec_context.height or None
        self._lock = threading.Lock()
        # Set by close() so that a realtime pause ends at once instead of sleeping it out.
        self._wake = threading.Event()

    @property
    def uri(self) -> str:
        """The URI as given to ``open_source``."""
        return self._uri

    @property
    def live(self) -> bool:
        """True for cameras, network streams and files read in real time: their frames say so
        (``Frame.live``), and a memory that falls behind drops its oldest queued frames."""
        return self._live

    @property
    def native_fps(self) -> float | None:
        """The stream's average frame rate, or None when the container does not say."""
        return self._native_fps

    @property
    def width(self) -> int | None:
        """Frame width in pixels, or None when unknown before decoding."""
        return self._width

    @property
    def height(self) -> int | None:
        """Frame height in pixels, or None when unknown before decoding."""
        return self._height

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called or iteration finished."""
        return self._closed

    def __iter__(self) -> Iterator[Frame]:
        if self._closed:
            raise SourceError(
                f"The source {self._uri!r} is closed; call open_source() again to read it."
            )
        if self._started:
            raise SourceError(
                f"The source {self._uri!r} is already being iterated; a source is read once. "
                f"Call open_source() again to read it from the start."
            )
        self._started = True
        self._generator = self._frames()
        return self._generator

    def close(self) -> None:
        """Stop reading and release the source. Safe to call twice and from another thread."""
        self._closed = True
        self._wake.set()
        generator = self._generator
        if generator is not None and self._reader not in (None, threading.get_ident()):
            # Another thread is reading. Closing the container under its decode could crash
            # FFmpeg, so it stops itself: it checks _closed after every frame, then releases.
            return
        self._generator = None
        if generator is not None:
            generator.close()  # runs its ``finally``, which releases the container
        self._release()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"FrameSource({self._uri!r}, {self.width}x{self.height}, "
            f"native_fps={self.native_fps}, fps={self._fps}, {state})"
        )

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._container.close()
        logger.debug("closed %s", self._uri)

    def _frames(self) -> Generator[Frame, None, None]:
        import av

        self._reader = threading.get_ident()
        native_fps = self.native_fps
        sampler = FpsSampler(self._fps, native_fps) if self._fps is not None else None
        decoded = delivered = 0
        decode_start = time.monotonic()
        pace_origin: tuple[float, float] | None = None  # (wall clock, timestamp) of frame 0
        warned_no_pts = False
        av_frames = self._container.decode(self._stream)
        try:
            while not self._closed:
                if self._max_frames is not None and delivered >= self._max_frames:
                    break
                try:
                    av_frame = next(av_frames)
                except StopIteration:
                    break
                except (av.FFmpegError, OSError) as exc:
                    raise SourceError(
                        f"Decoding {self._uri!r} failed after {delivered} frames were delivered "
                        f"({decoded} decoded): {exc}. The file may be truncated or corrupt "
                        f"(re-encode it with ffmpeg), or the stream was interrupted."
                    ) from exc

                timestamp = av_frame.time
                if timestamp is None:
                    if not warned_no_pts:
                        warned_no_pts = True
                        logger.warning(
                            "%s: frames carry no presentation time; timestamps are %s",
                            self._uri,
                            "frame number / native fps" if native_fps else "wall-clock time",
                        )
                    # Without pts, the nominal rate is the best clock; without that, arrival.
                    if native_fps:
                        timestamp = decoded / native_fps
                    else:
                        timestamp = time.monotonic() - decode_start
                decoded += 1
                if sampler is not None and not sampler.keep(timestamp):
                    continue

                if self._realtime:
                    now = time.monotonic()
                    if pace_origin is None:
                        pace_origin = (now, timestamp)
                    ahead = (timestamp - pace_origin[1]) - (now - pace_origin[0])
                    if ahead > 0:
                        self._wake.wait(ahead)
                    if self._closed:
                        break

                yield Frame(to_rgb_uint8(av_frame), float(timestamp), delivered, self._live)
                delivered += 1
        finally:
            self._closed = True
            logger.debug("%s: delivered %d of %d decoded frames", self._uri, delivered, decoded)
            self._release()


def open_source(
    uri: str | os.PathLike[str],
    fps: float | None = None,
    *,
    format: str | None = None,
    options: dict[str, str] | None = None,
    max_frames: int | None = None,
    timeout: float = 10.0,
    realtime: bool = False,
) -> FrameSource:
    """Open a video file, lavfi graph, network stream or camera for reading frames.

    Args:
        uri: What to open; see the module docstring for the accepted forms.
        fps: If given, thin the frames to at most this rate (see ``FpsSampler``); a slower
            source is passed unchanged, never duplicated. None keeps every frame.
        format: FFmpeg input format, overriding the one guessed from ``uri``
            (e.g. ``"v4l2"``, ``"avfoundation"``, ``"dshow"``, ``"mpegts"``).
        options: FFmpeg options for the input (e.g. ``{"rtsp_transport": "udp"}``,
            ``{"video_size": "1280x720"}`` for a camera). For RTSP, ``rtsp_transport`` defaults
            to ``"tcp"``.
        max_frames: Stop after delivering this many frames. None reads to the end.
        timeout: Seconds to wait for the source to open and for each read before giving up.
        realtime: Deliver frames no faster than their timestamps advance, so a file behaves
            like a live camera. Live sources are paced by nature; leave this False for them.

    Returns:
        The open ``FrameSource``.

    Raises:
        ConfigError: ``fps``, ``max_frames`` or ``timeout`` is out of range.
        SourceError: The source is missing, unreadable, or has no video stream.

    Example:
        >>> src = open_source("lavfi:testsrc=size=64x48:rate=10:duration=1")
        >>> frames = list(src)
        >>> len(frames), frames[0].image.shape, src.native_fps
        (10, (48, 64, 3), 10.0)
    """
    if fps is not None:
        fps = _check_fps(fps)
    if max_frames is not None and (
        isinstance(max_frames, bool)
        or not isinstance(max_frames, numbers.Integral)
        or max_frames < 1
    ):
        raise ConfigError(
            f"max_frames must be a positive int, got {max_frames!r}; pass None to read to the end."
        )
    if not (isinstance(timeout, numbers.Real) and math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}.")

    if not isinstance(uri, (str, os.PathLike)):
        raise ConfigError(
            f"uri must be a path or URL string, got {type(uri).__name__} {uri!r}; "
            f"for a camera pass its device, e.g. '/dev/video0'."
        )
    text = os.fsdecode(uri)
    target, format, options, kind = _resolve(text, format, dict(options or {}))

    import av

    try:
        container = av.open(target, format=format, options=options, timeout=timeout)
    except FileNotFoundError as exc:  # av.error.FileNotFoundError derives from it
        raise SourceError(
            f"{kind.capitalize()} {text!r} not found ({exc}); check the path or device name."
        ) from exc
    except (av.FFmpegError, OSError) as exc:
        hint = (
            f"check the URL, credentials and that the server answers within {timeout} s"
            if kind == "network stream"
            else "check that it is a video FFmpeg can read (try `ffprobe` on it)"
        )
        raise SourceError(f"Cannot open {kind} {text!r}: {exc}; {hint}.") from exc

    try:
        if not container.streams.video:
            found = ", ".join(s.type for s in container.streams) or "no streams"
            raise SourceError(
                f"{text!r} has no video stream (found: {found}); pass a video file, "
                f"stream or camera."
            )
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads: several times faster on CPU
    except BaseException:
        container.close()
        raise

    source = FrameSource(container, stream, text, fps=fps, max_frames=max_frames, realtime=realtime,
                         live=kind in ("network stream", "camera"))
    logger.info(
        "opened %s %s: %sx%s at %s fps%s",
        kind,
        text,
        source.width,
        source.height,
        source.native_fps,
        f", sampled to {fps} fps" if fps is not None else "",
    )
    return source


def _resolve(
    text: str, format: str | None, options: dict[str, str]
) -> tuple[str, str | None, dict[str, str], str]:
    """Map a URI to (what av.open gets, format, options, a word for messages)."""
    if text.startswith(_LAVFI_PREFIX):
        return text[len(_LAVFI_PREFIX) :], format or "lavfi", options, "lavfi graph"
    match = _SCHEME.match(text)
    if match and match.group(1).lower() in NETWORK_SCHEMES:
        if match.group(1).lower() in ("rtsp", "rtsps"):
            options.setdefault("rtsp_transport", "tcp")
        return text, format, options, "network stream"
    if format is None and text.startswith("/dev/video"):
        return text, "v4l2", options, "camera"
    if format is None and match is None:
        # Check before FFmpeg so the message can say where relative paths are looked up.
        if not os.path.exists(text):
            raise SourceError(
                f"Video file {text!r} not found (looked in {os.getcwd()!r} for relative "
                f"paths); check the path."
            )
        if os.path.isdir(text):
            raise SourceError(f"{text!r} is a directory; pass a video file inside it.")
    return text, format, options, "camera" if format == "v4l2" else "file"


def _check_fps(fps: float) -> float:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps):
        raise ConfigError(f"fps must be a positive finite number, got {fps!r}.")
    if fps <= 0:
        raise ConfigError(
            f"fps must be > 0, got {fps!r}; pass fps=None to keep every frame of the source."
        )
    return float(fps)


__all__ = ["NETWORK_SCHEMES", "FpsSampler", "FrameSource", "open_source"]
