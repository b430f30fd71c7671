"""``streamvxl serve``: cameras on one model, a health line, and the MQTT bridge.

`Service.run` loads the model once (the hub), starts a stream per camera (reopened from
``<log_dir>/<camera>`` when a log is there, its watch conditions re-armed from the config), a
reader thread per camera, the health line every ``health_seconds`` (also each camera's retained
MQTT status), and the bridge. When ``stop`` is set (SIGINT / SIGTERM in the CLI) it shuts down
in order: sources stop; questions in flight get ``shutdown_seconds`` to be answered (then they
are answered ``unavailable``); frames still queued are abandoned (with a log, the intervals
stored so far are on disk: the open interval is what a restart loses); the streams and their
logs close; every camera and the bridge say offline; the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any

from ..runtime.hub import Hub
from .camera import Camera, load_hub
from .config import ServeConfig
from .protocol import AskRequest

if TYPE_CHECKING:
    from .bridge import MqttBridge

log = logging.getLogger(__name__)


class Service:
    """Everything ``serve`` runs (see the module docstring). ``hub``: serve on this one (the
    caller closes it) instead of loading ``config``'s model."""

    def __init__(self, config: ServeConfig, hub: Hub | None = None) -> None:
        self.config = config
        self.hub: Hub | None = hub
        self._own_hub = hub is None
        self.cameras: dict[str, Camera] = {}
        self.bridge: MqttBridge | None = None
        self.started = threading.Event()
        """Set once every camera runs and the bridge has been started."""

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until ``stop`` is set; returns the exit status (0 after a clean shutdown).

        Raises:
            ConfigError: the model, a camera's memory settings or its log, or the broker's
                credentials are unusable (nothing is left running).
        """
        if self.config.mqtt is not None:
            from .bridge import MqttBridge  # aiomqtt: only a service with [mqtt] needs it

            self.bridge = MqttBridge(self.config.mqtt, [c.name for c in self.config.cameras],
                                     self._ask)
        await asyncio.to_thread(self._start_streams)
        bridge_stop = asyncio.Event()
        bridge = asyncio.create_task(self.bridge.run(bridge_stop)) if self.bridge else None
        health_stop = threading.Event()
        health = threading.Thread(target=self._health, args=(health_stop,), name="health",
                                  daemon=True)
        for camera in self.cameras.values():
            self._publish_status(camera)
            camera.start()
        health.start()
        self.started.set()
        log.info("serving %d cameras: %s", len(self.cameras), ", ".join(self.cameras))
        try:
            waits = [asyncio.create_task(stop.wait())] + ([bridge] if bridge else [])
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            waits[0].cancel()
            if bridge is not None and bridge.done():
                bridge.result()  # a broker that refused us for good: raise it
        finally:
            await self._shutdown(bridge, bridge_stop, health, health_stop)
        return 0

    # -- start and stop -------------------------------------------------------------------------
    def _start_streams(self) -> None:
        if self.hub is None:
            self.hub = load_hub(self.config)
        try:
            for camera in self.config.cameras:
                served = Camera.open(self.hub, camera, self.config.log_dir,
                                     self._publish_status, self._alert(camera.name))
                self.cameras[camera.name] = served
                if self.bridge is not None:
                    served.stream.on_interval(self._event(camera.name))
        except BaseException:
            self._close_streams()
            raise

    async def _shutdown(self, bridge: asyncio.Task | None, bridge_stop: asyncio.Event,
                        health: threading.Thread, health_stop: threading.Event) -> None:
        log.info("shutting down: stopping %d cameras", len(self.cameras))
        await asyncio.gather(*(asyncio.to_thread(c.stop) for c in self.cameras.values()))
        drained = (self.bridge is None or bridge is None or bridge.done()
                   or await self.bridge.drain(self.config.shutdown_seconds))
        if not drained:
            log.warning("questions still in flight after %.0f s are answered unavailable",
                        self.config.shutdown_seconds)
        health_stop.set()
        await asyncio.to_thread(health.join)
        for camera in self.cameras.values():  # the last counts, before the streams go
            self._publish_status(camera)
        await asyncio.to_thread(self._close_streams)
        if bridge is not None and not bridge.done():
            await asyncio.sleep(0)  # let the unavailable answers reach the outbox
            bridge_stop.set()
            try:
                await asyncio.wait_for(bridge, timeout=15.0)
            except (TimeoutError, Exception) as e:  # noqa: BLE001 - exiting anyway
                log.warning("MQTT: bridge did not stop cleanly: %r", e)
        log.info("stopped")

    def _close_streams(self) -> None:
        if self.hub is None:
            return
        for name in list(self.cameras):
            with contextlib.suppress(KeyError):
                self.hub[name].close(wait=False)
        if self._own_hub:
            self.hub.close(wait=False)

    # -- what cameras say -----------------------------------------------------------------------
    async def _ask(self, camera: str, request: AskRequest) -> Any:
        stream = self.cameras[camera].stream
        return await stream.aask(request.question, request.max_new_tokens,
                                 temperature=request.temperature, top_p=request.top_p,
                                 seed=request.seed, wait=request.wait, cite=request.cite,
                                 retrieve=request.retrieve)

    def _event(self, name: str):
        bridge = self.bridge
        return lambda event: bridge.post_event(name, event)

    def _alert(self, name: str):
        bridge = self.bridge
        return (lambda event: bridge.post_alert(name, event)) if bridge is not None else None

    def _publish_status(self, camera: Camera) -> None:
        if self.bridge is not None:
            self.bridge.set_status(camera.name, camera.status())

    def _health(self, stop: threading.Event) -> None:
        while not stop.wait(self.config.health_seconds):
            for camera in self.cameras.values():
                log.info("%s", camera.health_line())
                self._publish_status(camera)
            if self.bridge is not None:
                s = self.bridge.stats
                log.info("mqtt: %s, %d requests, %d answers, errors %s, %d published",
                         "connected" if s.connected else "DISCONNECTED", s.requests, s.answers,
                         dict(s.errors) or "none", s.published)


__all__ = ["Service"]
