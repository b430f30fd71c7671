"""Video sources: files, FFmpeg lavfi graphs, network streams and cameras, read through PyAV.

``open_source`` picks how to open a URI (`streamvxl.sources.uri`). Files and lavfi graphs
give a `FrameSource`, read in the caller's thread (``realtime`` paces a file like a camera).
Network streams and cameras give a `LiveSource`: a capture thread that reconnects with backoff
when the camera drops or stalls, counts what it drops when the reader is slow, reports its
state (`SourceEvent`, `SourceStats`), and marks each outage with a `Gap` on the first frame
after it -- which a memory records.
"""

from .factory import open_source
from .file import FrameSource
from .live import LiveSource
from .sampler import FpsSampler
from .status import Reconnect, SourceEvent, SourceState, SourceStats
from .uri import NETWORK_SCHEMES

__all__ = ["NETWORK_SCHEMES", "FpsSampler", "FrameSource", "LiveSource", "Reconnect",
           "SourceEvent", "SourceState", "SourceStats", "open_source"]
