"""One served camera: its stream (reopened from its log when there is one), its watch
conditions, its source read on a thread of its own into the stream, and its status.

The status is what ``<prefix>/<camera>/status`` carries and the health line shows: the source's
state (connecting, streaming, stalled, reconnecting, ended, failed), frames, rate, lag, drops,
intervals, memory, reconnects, gaps and the watch conditions that are on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ClosedError, StreamVXLError
from ..persist.log import log_file
from ..runtime.conditions import WatchEvent
from ..runtime.hub import Hub, StreamHandle
from ..runtime.runtime import Runtime
from ..sources import open_source
from ..sources.status import SourceEvent
from .config import CameraConfig, ServeConfig

log = logging.getLogger(__name__)


def load_hub(config: ServeConfig) -> Hub:
    """The one model every camera of ``config`` shares: its checkpoint, else streamvxl-tiny,
    fitting frames as ``config.fit`` asks."""
    if config.model_path:
        runtime = Runtime.from_pretrained(config.model_path, config=config.runtime,
                                          device=config.device)
    else:
        runtime = Runtime.default(config.runtime, device=config.device)
    if config.fit is not None and runtime.preprocessor is not None:
        # before the hub's worker starts: from then on only it touches the runtime
        runtime.preprocessor = replace(runtime.preprocessor, fit=config.fit)
    return Hub(runtime)


class Camera:
    """``config``'s source pushed into ``stream``, with its watch conditions armed.
    ``on_change`` hears every status change, ``on_alert`` every `WatchEvent` (both from the
    camera's thread or the worker's)."""

    def __init__(self, config: CameraConfig, stream: StreamHandle,
                 on_change: Callable[[Camera], None] | None = None,
                 on_alert: Callable[[WatchEvent], None] | None = None) -> None:
        self.config, self.stream = config, stream
        self.on_change, self.on_alert = on_change, on_alert
        self.name = config.name
        self.state = "connecting"
        self.error: str | None = None
        self.conditions: dict[str, bool] = {w.condition: False for w in config.watch}
        self._source: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name=f"camera-{self.name}",
                                        daemon=True)
        for w in config.watch:
            stream.watch(w.condition, self._watched, threshold=w.threshold,
                         hysteresis=w.hysteresis)

    @classmethod
    def open(cls, hub: Hub, config: CameraConfig, log_dir: str | None,
             on_change: Callable[[Camera], None] | None = None,
             on_alert: Callable[[WatchEvent], None] | None = None) -> Camera:
        """The camera's stream on ``hub`` -- reopened from ``<log_dir>/<camera>`` when a log is
        there, else new (and logged there, with a ``log_dir``) -- its watch conditions armed
        (they are not part of a memory: armed from the config on every start). Its source is
        not started (`start`)."""
        if log_dir is None:
            stream = hub.stream(config.name, config.memory)
        else:
            directory = Path(log_dir) / config.name
            if log_file(directory).exists():
                # a reopened memory keeps its recorded settings; only how it is served may
                # change, and the log's directory is where it already is
                stream = hub.open_stream(config.name, directory,
                                         replace(config.memory, log_dir=None))
                log.info("camera %s: memory reopened from %s (%d intervals)", config.name,
                         directory, stream.stats().intervals_in_memory)
            else:
                directory.mkdir(parents=True, exist_ok=True)
                stream = hub.stream(config.name, replace(config.memory, log_dir=str(directory)))
        try:
            return cls(config, stream, on_change, on_alert)
        except BaseException:
            stream.close(wait=False)
            raise

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

    def _watched(self, event: WatchEvent) -> None:
        """A watch condition of this camera turned (the worker thread calls it)."""
        self.conditions[event.condition] = event.state == "on"
        self._changed()
        if self.on_alert is not None:
            try:
                self.on_alert(event)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the camera
                log.exception("camera %s: alert listener failed", self.name)

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


__all__ = ["Camera", "load_hub"]
