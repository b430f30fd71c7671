"""A shard: one replica's hub (one model on one GPU, or on the CPU) and the cameras placed on it.

A `CameraShard` is what each Ray Serve replica runs (`streamvxl.cluster.app` wraps it in a
deployment); it imports nothing of Ray, so it is tested and used in-process too. Cameras come
and go by name (`open` / `close`) as the front places them; every camera's memory lives in
``<log_dir>/<camera>``, so a camera opened here after its last shard died continues from what
the log holds. Everything that crosses to the front is msgpack bytes: nothing is unpickled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections import deque

import msgpack
import torch

from ..errors import ClosedError, ConfigError, QuestionError, StreamVXLError
from ..runtime.conditions import WatchEvent
from ..runtime.events import IntervalEvent
from ..runtime.hub import Hub
from ..serve.camera import Camera, load_hub
from ..serve.config import ServeConfig, parse_config
from ..serve.protocol import (
    alert_message,
    answer_message,
    error_message,
    event_message,
    parse_ask,
)

log = logging.getLogger(__name__)

MAX_BACKLOG = 10000
"""Events and alerts kept between two drains by the front (the oldest dropped)."""


class CameraShard:
    """Cameras of ``config_text`` (the serve TOML) that the front places here, on one hub."""

    def __init__(self, config_text: str, name: str, hub: Hub | None = None) -> None:
        self.config: ServeConfig = parse_config(config_text, "serve config")
        if self.config.log_dir is None:
            raise ConfigError("a sharded service needs [serve] log_dir on storage every shard "
                              "reaches: a camera moves by reopening its memory from its log")
        self.name = name
        self.instance = uuid.uuid4().hex[:12]
        """This incarnation: a restarted replica has a new one (the front reopens its cameras)."""
        self.hub = hub or load_hub(self.config)
        self.cameras: dict[str, Camera] = {}
        self._by_name = {camera.name: camera for camera in self.config.cameras}
        self._lock = threading.Lock()
        self._backlog: deque[tuple[str, bytes]] = deque(maxlen=MAX_BACKLOG)
        log.info("shard %s (%s) up in process %d, %d torch threads", name, self.instance,
                 os.getpid(), torch.get_num_threads())

    # -- placement ------------------------------------------------------------------------------
    def ping(self) -> bytes:
        """Who this is: name, incarnation, process, the cameras it holds, and its memory
        (`memory_use`)."""
        return msgpack.packb({"shard": self.name, "instance": self.instance,
                              "pid": os.getpid(), "cameras": sorted(self.cameras),
                              "memory": memory_use(self.hub.runtime.model.device)})

    async def open(self, camera: str, source: bool = True) -> bytes:
        """`hold` off the event loop (a replica's pings stay answered meanwhile)."""
        return await asyncio.to_thread(self.hold, camera, source)

    async def close(self, camera: str) -> None:
        """`release` off the event loop."""
        await asyncio.to_thread(self.release, camera)

    def hold(self, camera: str, source: bool = True) -> bytes:
        """Hold ``camera``: its memory from its log (or a new one), its watch conditions, and
        (``source``) its source -- False for a file that was read to its end before the move.
        Returns its status. Idempotent."""
        with self._lock:
            if camera in self.cameras:
                return msgpack.packb(self.cameras[camera].status())
            if camera not in self._by_name:
                raise ConfigError(f"no camera {camera!r} in the configuration")
            served = Camera.open(self.hub, self._by_name[camera], self.config.log_dir,
                                 on_alert=self._alert(camera))
            served.stream.on_interval(self._event(camera))
            if source:
                served.start()
            else:
                served.state = "ended"
            self.cameras[camera] = served
            log.info("shard %s: camera %s opened (%d intervals from its log)", self.name, camera,
                     served.stream.stats().intervals_in_memory)
            return msgpack.packb(served.status())

    def release(self, camera: str) -> None:
        """Let ``camera`` go (it moves to another shard): its source stops, every frame it
        pushed is stored, its open interval closes and is logged, its log is released."""
        with self._lock:
            served = self.cameras.pop(camera, None)
        if served is None:
            return
        served.stop()
        try:
            served.stream.flush()
        except StreamVXLError as e:
            log.warning("camera %s: %r while flushing before the move", camera, e)
        served.stream.close(wait=True)
        log.info("shard %s: camera %s closed", self.name, camera)

    # -- questions and news ---------------------------------------------------------------------
    async def ask(self, camera: str, request: bytes) -> bytes:
        """A question (`streamvxl.serve.protocol` request fields, msgpack) to ``camera``: its
        answer message, or an error message."""
        ask = parse_ask(request, 1 << 20)
        served = self.cameras.get(camera)
        if served is None:
            return msgpack.packb(error_message("unavailable", f"camera {camera!r} is not on "
                                               f"shard {self.name} (it is moving)",
                                               ask.request_id, camera))
        try:
            answer = await served.stream.aask(ask.question, ask.max_new_tokens,
                                              temperature=ask.temperature, top_p=ask.top_p,
                                              seed=ask.seed, wait=ask.wait, cite=ask.cite,
                                              retrieve=ask.retrieve)
        except (QuestionError, ConfigError) as e:
            return msgpack.packb(error_message("bad_request", str(e), ask.request_id, camera))
        except (ClosedError, StreamVXLError) as e:
            return msgpack.packb(error_message("unavailable", f"{type(e).__name__}: {e}",
                                               ask.request_id, camera))
        return msgpack.packb(answer_message(camera, ask, answer))

    def drain(self) -> bytes:
        """What happened since the last drain: interval events and alerts (oldest first), and
        every camera's status now."""
        news = []
        while self._backlog:
            news.append(self._backlog.popleft())
        status = {name: c.status() for name, c in list(self.cameras.items())}
        return msgpack.packb({"news": news, "status": status, "instance": self.instance})

    def shutdown(self) -> None:
        for camera in list(self.cameras):
            self.release(camera)
        self.hub.close(wait=False)

    def _event(self, camera: str):
        def told(event: IntervalEvent) -> None:
            self._backlog.append(("event", msgpack.packb(event_message(camera, event))))
        return told

    def _alert(self, camera: str):
        def fired(event: WatchEvent) -> None:
            self._backlog.append(("alert", msgpack.packb(alert_message(camera, event))))
        return fired


def memory_use(device: torch.device) -> dict:
    """What this process holds, bytes: on a CUDA ``device``, torch's tensors now (``allocated``),
    their most since the process started (``peak``) and its caching allocator's pool
    (``reserved``, what other processes cannot have); ``rss``, the process's resident host
    memory (None where /proc is absent)."""
    use: dict = {"device": str(device), "allocated": None, "peak": None, "reserved": None,
                 "rss": None}
    if device.type == "cuda":
        use.update(allocated=torch.cuda.memory_allocated(device),
                   peak=torch.cuda.max_memory_allocated(device),
                   reserved=torch.cuda.memory_reserved(device))
    try:
        with open("/proc/self/statm") as fh:  # pages: total, resident, ...
            use["rss"] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pass
    return use


def event_from(message: dict) -> IntervalEvent:
    return IntervalEvent(**{k: message[k] for k in IntervalEvent.__dataclass_fields__})


def alert_from(message: dict) -> WatchEvent:
    return WatchEvent(**{k: message[k] for k in WatchEvent.__dataclass_fields__})


__all__ = ["CameraShard", "alert_from", "event_from", "memory_use"]
