"""What a URI names, and how FFmpeg opens it.

* a local file, any container FFmpeg reads: ``"clip.mp4"``;
* an FFmpeg lavfi graph: ``"lavfi:testsrc=size=64x48:rate=10:duration=2"``;
* a network stream: ``rtsp://``, ``rtsps://``, ``http(s)://``, ``rtmp(s)://``, ``udp://``,
  ``tcp://``, ``srt://``, ``rtp://`` (RTSP defaults to TCP transport, which survives packet loss
  and NAT far better than UDP);
* a V4L2 camera: ``"/dev/video0"``. Other capture devices work through ``format=``
  (e.g. ``open_source("0", format="avfoundation")`` on macOS).

Network streams and cameras are *live*: they are read on a thread of their own and reopened
when they drop (`streamvxl.sources.live`). Files and lavfi graphs are read as they come.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

from streamvxl.errors import SourceError

NETWORK_SCHEMES = frozenset(
    {"rtsp", "rtsps", "http", "https", "rtmp", "rtmps", "udp", "tcp", "srt", "rtp"}
)
"""URI schemes opened as network streams (options and timeout passed, no file check)."""

CAMERA_FORMATS = frozenset({"v4l2", "video4linux2", "avfoundation", "dshow", "vfwcap",
                            "gdigrab", "x11grab", "android_camera"})
"""FFmpeg input formats of capture devices: live, like network streams."""

LAVFI_PREFIX = "lavfi:"
LIVE_ANALYZE_MICROSECONDS = "500000"
"""FFmpeg's ``analyzeduration`` for network streams (0.5 s; override it in ``options``)."""
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

Kind = Literal["file", "lavfi graph", "network stream", "camera"]


@dataclass(frozen=True)
class Target:
    """How to open a URI with ``av.open``."""

    uri: str
    """The URI as given."""
    target: str
    """What ``av.open`` gets (a lavfi graph without its prefix, else the URI)."""
    format: str | None
    options: dict[str, str]
    kind: Kind
    """A word for messages, and whether the source is live."""

    @property
    def live(self) -> bool:
        """Network streams and cameras: read on their own thread, reopened when they drop."""
        return self.kind in ("network stream", "camera")


def resolve(text: str, format: str | None, options: dict[str, str]) -> Target:
    """The `Target` of a URI (``options`` is copied, never modified).

    Raises:
        SourceError: a local path that does not exist, or is a directory.
    """
    options = dict(options)
    if text.startswith(LAVFI_PREFIX):
        return Target(text, text[len(LAVFI_PREFIX):], format or "lavfi", options, "lavfi graph")
    match = _SCHEME.match(text)
    if match and match.group(1).lower() in NETWORK_SCHEMES:
        if match.group(1).lower() in ("rtsp", "rtsps"):
            options.setdefault("rtsp_transport", "tcp")
        # FFmpeg probes up to 5 s of a stream before its first frame; a camera's codec is known
        # from its first key frame, and every reconnect would pay the probe again
        options.setdefault("analyzeduration", LIVE_ANALYZE_MICROSECONDS)
        return Target(text, text, format, options, "network stream")
    if format is None and text.startswith("/dev/video"):
        return Target(text, text, "v4l2", options, "camera")
    if format is None and match is None:
        # Check before FFmpeg so the message can say where relative paths are looked up.
        if not os.path.exists(text):
            raise SourceError(
                f"Video file {text!r} not found (looked in {os.getcwd()!r} for relative "
                f"paths); check the path."
            )
        if os.path.isdir(text):
            raise SourceError(f"{text!r} is a directory; pass a video file inside it.")
    return Target(text, text, format, options, "camera" if format in CAMERA_FORMATS else "file")


__all__ = ["CAMERA_FORMATS", "LAVFI_PREFIX", "NETWORK_SCHEMES", "Kind", "Target", "resolve"]
