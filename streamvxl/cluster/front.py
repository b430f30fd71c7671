"""``streamvxl serve --ray``: the cameras of one TOML file sharded over Ray Serve replicas.

`ClusterService` is the front: it deploys ``[ray] shards`` shard applications
(`streamvxl.cluster.app`), places every camera on one live shard (rendezvous hashing:
`streamvxl.cluster.placement`), and every ``check_seconds``:

- pings every shard (with a timeout). A shard that does not answer is dead: its cameras are
  placed on the survivors, which reopen their memories from their logs (losing at most each
  camera's open interval) and reconnect their sources. Serve restarts the dead replica; when it
  answers again (a new incarnation) it is live again and takes back the cameras it wins --
  each closed on its interim shard first (its open interval stored and logged), then reopened.
- drains every shard's interval events, alerts and camera statuses into the MQTT bridge.

Questions arriving over MQTT go to the shard holding the camera; one asked while its camera is
moving is answered ``unavailable`` (the agent asks again). Everything between the front and
the shards is msgpack bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

from ..errors import ClosedError, ConfigError
from ..serve.config import ServeConfig
from ..serve.protocol import AskRequest
from .placement import place
from .shard import alert_from, event_from

if TYPE_CHECKING:
    from ..serve.bridge import MqttBridge

log = logging.getLogger(__name__)


@dataclass
class ShardView:
    """What the front knows of one shard."""

    name: str
    handle: Any
    instance: str | None = None
    pid: int | None = None
    live: bool = False
    cameras: set[str] = field(default_factory=set)
    """Cameras the front has opened there (and not closed)."""
    retiring: bool = False
    """Being removed (`ClusterService.resize`): no camera is placed on it."""
    memory: dict = field(default_factory=dict)
    """Its process's memory at its last ping (`streamvxl.cluster.shard.memory_use`)."""
    asking: set[asyncio.Task] = field(default_factory=set)
    """Questions in flight there: cancelled when it dies (answered `unavailable` at once,
    instead of waiting for Serve to bring the replica back)."""


@dataclass
class Move:
    """One camera's move, for the record (`ClusterService.moves`)."""

    camera: str
    source: str | None
    target: str
    reason: str
    started: float
    """`time.monotonic()` when the move began."""
    finished: float | None = None


class ClusterService:
    """The front of a sharded service (see the module docstring)."""

    def __init__(self, config: ServeConfig, config_text: str, path: str | None = None) -> None:
        if config.ray is None:
            raise ConfigError("serve --ray needs a [ray] table (shards = N at least)")
        if config.log_dir is None:
            raise ConfigError("serve --ray needs [serve] log_dir on storage every shard reaches: "
                              "a camera moves by reopening its memory from its log")
        self.config, self.text, self.ray = config, config_text, config.ray
        self.path = path
        """The file `reload` reads again (SIGHUP)."""
        self.cameras = [c.name for c in config.cameras]
        self.shards: dict[str, ShardView] = {}
        self.owner: dict[str, str] = {}
        """Where each camera is open now."""
        self.ended: set[str] = set()
        """Cameras whose source (a file) was read to its end: not restarted after a move."""
        self.moves: list[Move] = []
        self.statuses: dict[str, dict] = {}
        """Each camera's latest status (`streamvxl.serve.camera.Camera.status`) from the shard
        holding it, as of the last check."""
        self.bridge: MqttBridge | None = None
        self.started = asyncio.Event()
        self._checking = asyncio.Lock()

    # -- run ------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> int:
        import ray
        r = self.ray
        if not ray.is_initialized():
            ray.init(address=r.address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        await self._deploy(range(r.shards))
        if self.config.mqtt is not None:
            from ..serve.bridge import MqttBridge  # aiomqtt: only with [mqtt]

            self.bridge = MqttBridge(self.config.mqtt, self.cameras, self._ask)
        bridge_stop = asyncio.Event()
        bridge = asyncio.create_task(self.bridge.run(bridge_stop)) if self.bridge else None
        try:
            await self._check_until(stop)
            self.started.set()
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), r.check_seconds)
                if bridge is not None and bridge.done():
                    bridge.result()
                await self._check_until(stop)
        finally:
            await self._shutdown(bridge, bridge_stop)
        return 0

    async def _check_until(self, stop: asyncio.Event) -> None:
        """A `check` that ``stop`` cuts short: moving cameras back onto a restarted shard can
        take minutes (each is closed with its backlog stored first, one after another), and a
        SIGTERM must not wait for them -- shutting down closes every camera where it is."""
        check = asyncio.ensure_future(self.check())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({check, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            check.cancel()
            raise
        finally:
            stopped.cancel()
        if check.done():
            check.result()
            return
        check.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await check
        log.info("stopping: the check under way was cut short")

    async def reload(self) -> None:
        """Read the configuration file again and apply a new ``[ray] shards`` (other changes
        need a restart, and are logged as such)."""
        from ..serve.config import load_config

        if self.path is None:
            return
        try:
            config = load_config(self.path)
        except ConfigError as e:
            log.error("reload refused, nothing changed: %s", e)
            return
        if config.ray is None or config.ray.shards == len(self.shards):
            log.info("reload: [ray] shards unchanged (%d)", len(self.shards))
        else:
            log.info("reload: %d -> %d shards", len(self.shards), config.ray.shards)
            await self.resize(config.ray.shards)
        if config.cameras != self.config.cameras:
            log.warning("reload: camera changes take a restart to apply")

    async def resize(self, shards: int) -> None:
        """Grow to ``shards`` shards (the new ones take the cameras they win) or shrink to them
        (the last ones' cameras move to the others first -- closed there, reopened here -- then
        those shards are deleted). Placement moves only the cameras that must move."""
        from ray import serve

        if shards < 1:
            raise ConfigError(f"[ray] shards must be at least 1, got {shards}")
        now = len(self.shards)
        if shards > now:
            await self._deploy(range(now, shards))
        for i in range(shards, now):
            self.shards[f"shard-{i}"].retiring = True
        await self.check()
        for i in range(shards, now):
            name = f"shard-{i}"
            view = self.shards[name]
            if view.cameras:
                log.warning("%s still holds %s; it is deleted all the same", name,
                            sorted(view.cameras))
            await asyncio.to_thread(serve.delete, name)
            del self.shards[name]
        log.info("%d shards", len(self.shards))

    async def _deploy(self, indices: range) -> None:
        from ray import serve
        from ray.serve.handle import DeploymentHandle

        from .app import shard_application

        r = self.ray
        for i in indices:
            name = f"shard-{i}"
            app = shard_application(self.text, name, num_cpus=r.cpus_per_shard,
                                    num_gpus=r.gpus_per_shard)
            await asyncio.to_thread(serve.run, app, name=name, route_prefix=None)
            # the front's own handle (Serve's `get_app_handle` shares one per name, kept
            # after the app is deleted), routing on this loop, where every call is made: the
            # default router runs on a loop of its own thread, two thread hops more per call
            handle = DeploymentHandle(name, app_name=name)
            handle._init(_run_router_in_separate_loop=False)
            self.shards[name] = ShardView(name, handle)
        log.info("shards %s deployed", [f"shard-{i}" for i in indices])

    async def check(self) -> None:
        """Ping every shard, move the cameras that must move, pass on the shards' news (one
        check at a time: the periodic one and a `resize`'s never interleave their moves)."""
        async with self._checking:
            await self._check()

    async def _check(self) -> None:
        views = list(self.shards.values())
        pings = await asyncio.gather(*(self._ping(s) for s in views))
        for shard, info in zip(views, pings, strict=True):
            if info is None:
                if shard.live:
                    log.warning("%s (process %s) does not answer: its cameras %s move",
                                shard.name, shard.pid, sorted(shard.cameras))
                shard.live = False
                for task in shard.asking:
                    task.cancel()
                for camera in shard.cameras:
                    if self.owner.get(camera) == shard.name:
                        del self.owner[camera]
                shard.cameras.clear()
                continue
            if shard.instance is not None and info["instance"] != shard.instance:
                log.warning("%s came back as a new replica (process %d)", shard.name,
                            info["pid"])
                for camera in shard.cameras:  # never noticed dead: its cameras went with it
                    if self.owner.get(camera) == shard.name:
                        del self.owner[camera]
                shard.cameras.clear()
            shard.instance, shard.pid, shard.live = info["instance"], info["pid"], True
            shard.memory = info.get("memory", {})
        await self._place()
        await self._drain()

    async def _place(self) -> None:
        live = [s.name for s in self.shards.values() if s.live and not s.retiring]
        if not live:
            log.error("no shard is live; cameras wait")
            return
        for camera, target in place(self.cameras, live).items():
            source = self.owner.get(camera)
            if source == target:
                continue
            reason = "placed" if source is None else "rebalanced"
            move = Move(camera, source, target, reason, time.monotonic())
            try:
                if source is not None:
                    await self._call(source, "close", camera, timeout=120.0)
                    self.shards[source].cameras.discard(camera)
                    del self.owner[camera]
                status = msgpack.unpackb(await self._call(
                    target, "open", camera, camera not in self.ended, timeout=300.0))
            except Exception as e:  # noqa: BLE001 - tried again at the next check
                log.warning("moving camera %s to %s failed: %r (tried again)", camera, target, e)
                continue
            self.owner[camera] = target
            self.shards[target].cameras.add(camera)
            move.finished = time.monotonic()
            self.moves.append(move)
            self.statuses[camera] = status
            log.info("camera %s %s on %s in %.2f s (%d intervals in memory)", camera, reason,
                     target, move.finished - move.started, status["intervals_in_memory"])
            if self.bridge is not None:
                self.bridge.set_status(camera, status)

    async def _drain(self) -> None:
        live = [s for s in self.shards.values() if s.live]
        # all at once, each bounded like a ping: a shard that died since its ping must not
        # hold up the next check (and with it the move of its cameras)
        replies = await asyncio.gather(*(self._call(s.name, "drain", timeout=self.ray.ping_timeout)
                                         for s in live), return_exceptions=True)
        for shard, reply in zip(live, replies, strict=True):
            if isinstance(reply, BaseException):
                log.debug("draining %s failed: %r", shard.name, reply)  # the next ping decides
                continue
            news = msgpack.unpackb(reply)
            for camera, status in news["status"].items():
                if status["state"] == "ended":
                    self.ended.add(camera)
                if self.owner.get(camera) != shard.name:
                    continue
                self.statuses[camera] = status
                if self.bridge is not None:
                    self.bridge.set_status(camera, status)
            if self.bridge is None:
                continue
            for kind, body in news["news"]:
                message = msgpack.unpackb(body)
                if kind == "event":
                    self.bridge.post_event(message["camera"], event_from(message))
                else:
                    self.bridge.post_alert(message["camera"], alert_from(message))

    async def _shutdown(self, bridge: asyncio.Task | None, bridge_stop: asyncio.Event) -> None:
        from ray import serve

        log.info("shutting down: closing %d cameras", len(self.owner))
        await asyncio.gather(*(self._call(s, "close", c, timeout=60.0)
                               for c, s in list(self.owner.items())), return_exceptions=True)
        self.owner.clear()
        if bridge is not None and not bridge.done():
            bridge_stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bridge, 15.0)
        for name in self.shards:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(serve.delete, name)
        log.info("stopped")

    # -- calls ----------------------------------------------------------------------------------
    async def ask(self, camera: str, request: dict) -> dict:
        """Ask ``camera`` (request fields as in `streamvxl.serve.protocol`): its answer or
        error message."""
        shard = self.owner.get(camera)
        if shard is None:
            if camera not in self.cameras:
                raise ConfigError(f"no camera {camera!r}; cameras: {self.cameras}")
            raise ClosedError(f"camera {camera!r} is moving to another shard; ask again")
        call = asyncio.ensure_future(self._call(shard, "ask", camera, msgpack.packb(request),
                                                timeout=self.ray.ask_timeout))
        asking = self.shards[shard].asking
        asking.add(call)
        try:
            body = await call
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # our caller gave up: pass it on
                raise
            raise ClosedError(f"camera {camera!r}: {shard} died; it is moving to another "
                              "shard, ask again") from None
        finally:
            asking.discard(call)
        return msgpack.unpackb(body)

    async def _ask(self, camera: str, request: AskRequest) -> dict:
        """The bridge's question: the shard's answer or error message, as it made it."""
        return await self.ask(camera, {
            "question": request.question, "id": request.request_id,
            "max_new_tokens": request.max_new_tokens, "temperature": request.temperature,
            "top_p": request.top_p, "seed": request.seed, "wait": request.wait,
            "cite": request.cite, "retrieve": request.retrieve})

    async def _ping(self, shard: ShardView) -> dict | None:
        try:
            return msgpack.unpackb(await self._call(shard.name, "ping",
                                                    timeout=self.ray.ping_timeout))
        except Exception:  # noqa: BLE001 - no answer in time, or the replica died: not live
            return None

    async def _call(self, shard: str, method: str, *args: Any, timeout: float) -> Any:
        handle = self.shards[shard].handle
        return await asyncio.wait_for(getattr(handle, method).remote(*args), timeout)


__all__ = ["ClusterService", "Move", "ShardView"]
