"""`FrameSource`: a file or lavfi graph read frame by frame, in the reader's thread.

Frames carry the source's presentation times in seconds. Nothing is dropped: the reader sets the
pace (or, with ``realtime``, the timestamps do, so a file stands in for a live camera).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from streamvxl.errors import SourceError
from streamvxl.frames import Frame, to_rgb_uint8

from .sampler import FpsSampler
from .status import SourceStats

if TYPE_CHECKING:
    import av.container
    import av.video

logger = logging.getLogger(__name__)


class FrameSource:
    """An open video source: iterate it for ``Frame``s, close it when done (or use ``with``).

    Iterate once: a source is a stream, not a list. Frames carry the source's presentation
    times in seconds and ``index`` 0, 1, 2, ... over the frames delivered. Iteration ends at
    the end of the source or after ``max_frames``, and then releases the source.

    ``close()`` may be called from another thread to stop a reader: the reading thread stops
    and releases the source when it asks for its next frame (network reads are bounded by the
    ``timeout`` given to ``open_source``; a realtime pause ends at once). Closing from the
    reading thread, or when nobody is iterating, releases the source immediately.

    Created by ``open_source`` for files and lavfi graphs; not meant to be constructed
    directly.

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
        self._decoded = self._delivered = 0
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

    def stats(self) -> SourceStats:
        """Frames decoded and delivered so far (a file never drops or reconnects)."""
        return SourceStats("ended" if self._closed else "streaming", self._decoded,
                           self._delivered, 0, 0, 0, 0.0, 0.0, self.width, self.height)

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
        self._decoded = self._delivered = 0
        decode_start = time.monotonic()
        pace_origin: tuple[float, float] | None = None  # (wall clock, timestamp) of frame 0
        warned_no_pts = False
        av_frames = self._container.decode(self._stream)
        try:
            while not self._closed:
                if self._max_frames is not None and self._delivered >= self._max_frames:
                    break
                try:
                    av_frame = next(av_frames)
                except StopIteration:
                    break
                except (av.FFmpegError, OSError) as exc:
                    raise SourceError(
                        f"Decoding {self._uri!r} failed after {self._delivered} frames were "
                        f"delivered ({self._decoded} decoded): {exc}. The file may be truncated or corrupt "
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
                        timestamp = self._decoded / native_fps
                    else:
                        timestamp = time.monotonic() - decode_start
                self._decoded += 1
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

                yield Frame(to_rgb_uint8(av_frame), float(timestamp), self._delivered, self._live)
                self._delivered += 1
        finally:
            self._closed = True
            logger.debug("%s: delivered %d of %d decoded frames", self._uri, self._delivered,
                         self._decoded)
            self._release()
