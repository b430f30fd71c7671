"""One served camera: its source read on a thread of its own into its stream, and its status.

The status is what ``<prefix>/<camera>/status`` carries and the health line shows: the source's
state (connecting, streaming, stalled, reconnecting, ended, failed), frames, rate, lag, drops,
intervals, memory, reconnects, gaps and the watch conditions that are on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..errors import ClosedError, StreamVXLError
from ..runtime.conditions import WatchEvent
from ..runtime.hub import StreamHandle
from ..sources import open_source
from ..sources.status import SourceEvent
from .config import CameraConfig

log = logging.getLogger(__name__)


class Camera:
    """``config``'s source pushed into ``stream``; ``on_change`` hears every status change
    (from the camera's thread or the worker's)."""

    def __init__(self, config: CameraConfig, stream: StreamHandle,
                 on_change: Any = None) -> None:
        self.config, self.stream, self.on_change = config, stream, on_change
        self.name = config.name
        self.state = "connecting"
        self.error: str | None = None
        self.conditions: dict[str, bool] = {w.condition: False for w in config.watch}
        self._source: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name=f"camera-{self.name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading (the source is closed; its thread ends after its current read)."""
        self._stop.set()
        source = self._source
        if source is not None:
            source.close()
        if self._thread.ident is None:  # never started (a finished file, reopened elsewhere)
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("camera %s: its reader did not stop within %.0f s", self.name, timeout)

    def watched(self, event: WatchEvent) -> None:
        """A watch condition of this camera turned (the worker thread calls it)."""
        self.conditions[event.condition] = event.state == "on"
        self._changed()

    def status(self) -> dict[str, Any]:
        """The camera's health as plain data (see the module docstring)."""
        s = self.stream.stats()
        source = self._source.stats() if self._source is not None else None
        return {
            "camera": self.name, "state": self.state, "error": self.error,
            "fps": round(source.fps, 3) if source is not None else 0.0,
            "frames_seen": s.frames_seen, "frames_pushed": s.frames_pushed,
            "frames_dropped": s.frames_dropped + (source.frames_dropped if source else 0),
            "queue_depth": s.queue_depth, "lag": round(s.lag, 3),
            "intervals": s.intervals_closed, "intervals_in_memory": s.intervals_in_memory,
            "intervals_logged": s.intervals_logged,
            "memory_tokens": s.memory_tokens, "token_budget": s.token_budget,
            "memory_bytes": s.memory_bytes,
            "reconnects": source.reconnects if source is not None else 0,
            "gaps": len(s.gaps), "conditions_on": sorted(c for c, on in self.conditions.items()
                                                         if on),
            "at": time.time(),
        }

    def health_line(self) -> str:
        s = self.status()
        budget = f"/{s['token_budget']}" if s["token_budget"] else ""
        on = f", ON: {'; '.join(s['conditions_on'])}" if s["conditions_on"] else ""
        error = f" ({s['error']})" if s["error"] else ""
        return (f"{self.name}: {s['state']}{error} {s['fps']:.1f} fps, lag {s['lag']:.1f} s, "
                f"dropped {s['frames_dropped']}, {s['intervals']} intervals "
                f"({s['intervals_in_memory']} in memory, {s['memory_tokens']}{budget} tokens, "
                f"{s['memory_bytes'] / 2**20:.1f} MiB), reconnects {s['reconnects']}, "
                f"gaps {s['gaps']}{on}")

    # -- the reader thread ----------------------------------------------------------------------
    def _pump(self) -> None:
        c = self.config
        try:
            self._source = open_source(c.source, fps=c.fps, realtime=c.realtime,
                                       on_event=self._on_source_event)
            if self._stop.is_set():
                self._source.close()
            with self._source as source:
                if self.state == "connecting":  # files and lavfi graphs report no events
                    self._set_state("streaming")
                for frame in source:
                    if self._stop.is_set():
                        break
                    self.stream.push(frame)
            if not self._stop.is_set():  # a file read to its end: its last interval is stored
                self.stream.flush()      # (and logged) now, not lost with the process later
            self._set_state("ended")
        except ClosedError:
            self._set_state("ended")
        except StreamVXLError as e:
            if self._stop.is_set():
                self._set_state("ended")
                return
            log.error("camera %s: %s: %s", self.name, type(e).__name__, e)
            self.error = f"{type(e).__name__}: {e}"
            self._set_state("failed")
        except Exception as e:  # noqa: BLE001 - one camera's failure must not stop the others
            log.exception("camera %s failed", self.name)
            self.error = f"{type(e).__name__}: {e}"
            self._set_state("failed")

    def _on_source_event(self, event: SourceEvent) -> None:
        if event.state in ("ended", "failed") and self._stop.is_set():
            return
        detail = f" ({event.detail})" if event.detail else ""
        log.info("camera %s: %s%s", self.name, event.state, detail)
        self._set_state(event.state)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the camera
                log.exception("camera %s: status listener failed", self.name)


__all__ = ["Camera"]
