"""`open_source`: one function for files, lavfi graphs, network streams and cameras."""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Callable

from streamvxl.errors import ConfigError, SourceError

from .file import FrameSource
from .live import BufferPolicy, LiveSource
from .sampler import check_fps
from .status import Reconnect, SourceEvent
from .uri import resolve

logger = logging.getLogger(__name__)


def open_source(
    uri: str | os.PathLike[str],
    fps: float | None = None,
    *,
    format: str | None = None,
    options: dict[str, str] | None = None,
    max_frames: int | None = None,
    timeout: float = 10.0,
    realtime: bool = False,
    reconnect: Reconnect | bool | None = None,
    buffer: int = 8,
    overflow: BufferPolicy = "drop_oldest",
    on_event: Callable[[SourceEvent], None] | None = None,
) -> FrameSource | LiveSource:
    """Open a video file, lavfi graph, network stream or camera for reading frames.

    Network streams and cameras come back as a `LiveSource`: read on a thread of their own into
    a small buffer (``buffer`` frames; when the reader falls behind, ``overflow`` says which
    frame is dropped, counted), reopened when they drop or stall, with wall-clock timestamps and
    a `Gap` on the first frame after an outage. Files and lavfi graphs come back as a
    `FrameSource`, read in the reader's thread with nothing dropped.

    Args:
        uri: What to open; see `streamvxl.sources.uri` for the accepted forms.
        fps: If given, thin the frames to at most this rate (see ``FpsSampler``); a slower
            source is passed unchanged, never duplicated. None keeps every frame.
        format: FFmpeg input format, overriding the one guessed from ``uri``
            (e.g. ``"v4l2"``, ``"avfoundation"``, ``"dshow"``, ``"mpegts"``).
        options: FFmpeg options for the input (e.g. ``{"rtsp_transport": "udp"}``,
            ``{"video_size": "1280x720"}`` for a camera). For RTSP, ``rtsp_transport`` defaults
            to ``"tcp"``.
        max_frames: Stop after delivering this many frames. None reads to the end.
        timeout: Seconds an open may take (and, for files, each read).
        realtime: Deliver a file's frames no faster than their timestamps advance, so it
            behaves like a live camera (its frames say ``live``). Live sources are paced by
            nature.
        reconnect: For live sources: how to reopen them (`Reconnect`); None or True: the
            defaults (forever, backoff from 0.5 s to 30 s, a stall after 10 s without data);
            False: never -- an end ends the source and an error fails it. Files are never
            reopened.
        buffer: Frames a live source holds for a slow reader.
        overflow: Which frame a live source's full buffer drops.
        on_event: Called with every state change of a live source (on its capture thread).

    Returns:
        A ``FrameSource`` (files, lavfi) or a ``LiveSource`` (network streams, cameras).

    Raises:
        ConfigError: ``fps``, ``max_frames``, ``timeout``, ``buffer`` or ``reconnect`` is out of
            range.
        SourceError: A file is missing, unreadable, or has no video stream. (A live source
            reports such failures as events and reconnects; with ``reconnect=False`` its
            iteration raises them.)

    Example:
        >>> src = open_source("lavfi:testsrc=size=64x48:rate=10:duration=1")
        >>> frames = list(src)
        >>> len(frames), frames[0].image.shape, src.native_fps
        (10, (48, 64, 3), 10.0)
    """
    if fps is not None:
        fps = check_fps(fps)
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
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise ConfigError(f"buffer must be a positive int (frames), got {buffer!r}.")
    if overflow not in ("drop_oldest", "drop_newest"):
        raise ConfigError(f"overflow must be 'drop_oldest' or 'drop_newest', got {overflow!r}.")
    if not isinstance(uri, (str, os.PathLike)):
        raise ConfigError(
            f"uri must be a path or URL string, got {type(uri).__name__} {uri!r}; "
            f"for a camera pass its device, e.g. '/dev/video0'."
        )
    target = resolve(os.fsdecode(uri), format, dict(options or {}))
    if target.live:
        if reconnect is None or reconnect is True:
            policy: Reconnect | None = Reconnect()
        elif reconnect is False:
            policy = None
        elif isinstance(reconnect, Reconnect):
            policy = reconnect
        else:
            raise ConfigError(f"reconnect must be a Reconnect, True, False or None, got "
                              f"{reconnect!r}.")
        return LiveSource(target, fps=fps, max_frames=max_frames, timeout=timeout,
                          reconnect=policy, buffer=buffer, overflow=overflow, on_event=on_event)
    if reconnect:
        raise ConfigError(f"{target.kind} {target.uri!r} is read once; reconnect applies to "
                          "network streams and cameras only.")
    return _open_file(target, fps, max_frames, timeout, realtime)


def _open_file(target, fps, max_frames, timeout, realtime) -> FrameSource:
    import av

    text, kind = target.uri, target.kind
    try:
        container = av.open(target.target, format=target.format, options=target.options,
                            timeout=timeout)
    except FileNotFoundError as exc:  # av.error.FileNotFoundError derives from it
        raise SourceError(
            f"{kind.capitalize()} {text!r} not found ({exc}); check the path or device name."
        ) from exc
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(f"Cannot open {kind} {text!r}: {exc}; check that it is a video FFmpeg "
                          "can read (try `ffprobe` on it).") from exc

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

    source = FrameSource(container, stream, text, fps=fps, max_frames=max_frames,
                         realtime=realtime)
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


__all__ = ["open_source"]
