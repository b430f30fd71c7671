"""The MQTT bridge: questions in, answers, interval events, alerts and status out (aiomqtt).

Topics, under the configured prefix::

    <prefix>/<camera>/ask      in:  a question (`streamvxl.serve.protocol`)
    <prefix>/<camera>/answer   out: answers with no response topic / reply_to of their own
    <prefix>/<camera>/event    out: an interval was stored (time span, ratio, tokens)
    <prefix>/<camera>/alert    out: a watch condition turned on or off
    <prefix>/<camera>/status   out, retained: the camera's health, refreshed periodically
    <prefix>/available         out, retained: "online", or "offline" (also the last will)
    <prefix>/error             out: errors about requests that name no camera and no reply topic

An answer goes to the MQTT 5 response topic of its question with the question's correlation
data; else to the ``reply_to`` of its payload (MQTT 3.1.1 clients); else to
``<prefix>/<camera>/answer``. Answers of one camera are published in the order their questions
arrived, however many are in flight. Every request gets a reply -- an answer or an error naming
what was wrong -- and none crashes the bridge.

The bridge connects with MQTT 5 and keeps its session (a broker that persists sessions queues
questions for it while it is away). When the broker goes away it reconnects with exponential
backoff and jitter, republishes ``available`` and every status, and then what piled up in its
outbox meanwhile (answers, events, alerts; the oldest dropped past ``outbox``, counted).
Agents should wait for ``<prefix>/available`` = ``online`` before asking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ClosedError, ConfigError, MissingDependencyError, QuestionError, StreamVXLError
from ..runtime.conditions import WatchEvent
from ..runtime.events import IntervalEvent
from .config import MqttConfig
from .protocol import (
    AskRequest,
    Encoding,
    RequestError,
    alert_message,
    answer_message,
    decode,
    encode,
    error_message,
    event_message,
    is_topic_name,
    parse_ask,
    request_address,
)

try:
    import aiomqtt
    from aiomqtt.exceptions import MqttConnectError
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError as e:  # the service imports this module only for an [mqtt] table
    raise MissingDependencyError(f"the MQTT bridge ([mqtt]) needs aiomqtt: pip install "
                                 f"'streamvxl[mqtt]' ({e})") from e

log = logging.getLogger(__name__)

OUT_KINDS = ("answer", "event", "alert", "status")
"""What the bridge publishes per camera: never taken as a request."""
SESSION_EXPIRY = 3600
"""Seconds a broker may keep the bridge's session (its subscription) while it is away."""
CONTENT_TYPES = {"json": "application/json", "msgpack": "application/msgpack"}
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""Small messages go out at once: with Nagle's algorithm an answer can wait ~40 ms for the
broker's delayed ACK of the previous one."""

Ask = Callable[[str, AskRequest], Awaitable[Any]]
"""``ask(camera, request)``: the camera's answer -- an `Answer`, or an answer / error message
already made (`streamvxl.serve.protocol`; a sharded service's shards make them)."""


@dataclass
class BridgeStats:
    """What the bridge has done so far (read from any thread)."""

    connects: int = 0
    requests: int = 0
    answers: int = 0
    errors: Counter = field(default_factory=Counter)
    """Error replies by code."""
    published: int = 0
    outbox_dropped: int = 0
    unpublishable: int = 0
    """Messages the MQTT client refused to publish (e.g. a topic it cannot take), dropped."""
    connected: bool = False


@dataclass
class _Out:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    properties: Properties | None = None


@dataclass
class _Reply:
    """Where a request's reply goes, and in what encoding."""

    topic: str
    encoding: Encoding
    correlation: bytes | None = None


class MqttBridge:
    """Cameras' memories on an MQTT broker. `run` it on an event loop; `post_event`,
    `post_alert` and `set_status` may be called from any thread."""

    def __init__(self, config: MqttConfig, cameras: list[str], ask: Ask) -> None:
        self.config, self.cameras, self._ask = config, list(cameras), ask
        self.prefix = config.prefix
        self.stats = BridgeStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: deque[_Out] = deque()
        self._ready = asyncio.Event()
        self._status: dict[str, dict] = {}
        self._dirty: set[str] = set()
        self._lanes: dict[str, asyncio.Queue] = {}
        self._lane_tasks: list[asyncio.Task] = []
        self._pending: dict[str, int] = dict.fromkeys(cameras, 0)
        self._client: aiomqtt.Client | None = None

    # -- from any thread ------------------------------------------------------------------------
    def post_event(self, camera: str, event: IntervalEvent) -> None:
        self._post(f"{self.prefix}/{camera}/event", encode(event_message(camera, event)))

    def post_alert(self, camera: str, event: WatchEvent) -> None:
        self._post(f"{self.prefix}/{camera}/alert", encode(alert_message(camera, event)))

    def set_status(self, camera: str, status: dict) -> None:
        """The camera's status now (published retained; the newest wins)."""
        if self._loop is None:
            self._status[camera] = status
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing more goes out
            self._loop.call_soon_threadsafe(self._set_status, camera, status)

    def _post(self, topic: str, payload: bytes) -> None:
        if self._loop is None:
            self._enqueue(_Out(topic, payload))
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._enqueue, _Out(topic, payload))

    # -- the connection -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve, and reconnect with backoff whenever the broker goes away, until
        ``stop`` is set; then say offline and disconnect.

        Raises:
            ConfigError: the broker refused the credentials or the TLS settings are unusable
                (retrying would not help).
        """
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        if self._outbox:
            self._ready.set()
        for camera in self.cameras:
            self._lanes[camera] = asyncio.Queue()
            self._lane_tasks.append(asyncio.create_task(self._answer_in_order(camera)))
        delay = self.config.reconnect_initial
        try:
            while not stop.is_set():
                # a fresh client for every attempt: aiomqtt 2.5 keeps a dropped connection's
                # CONNACK, so a reused client "connects" to any socket that merely accepts (a
                # broker still starting, a proxy) and fails later on paho's own error codes
                # (empicano/aiomqtt#288)
                client = self._make_client()
                try:
                    async with client:
                        self._client = client
                        self.stats.connects += 1
                        self.stats.connected = True
                        delay = self.config.reconnect_initial
                        log.info("MQTT: connected to %s:%d as %r", self.config.host,
                                 self.config.port, client.identifier)
                        await self._hello(client)
                        await self._serve(client, stop)
                        if stop.is_set():
                            await self._goodbye(client)
                except aiomqtt.MqttCodeError as e:
                    if _refused_for_good(e):
                        raise ConfigError(f"the MQTT broker {self.config.host}:"
                                          f"{self.config.port} refused the connection: {e} "
                                          "(check [mqtt] username / password / tls)") from e
                    log.warning("MQTT: %s; reconnecting in %.1f s", e, delay)
                except aiomqtt.MqttError as e:
                    log.warning("MQTT: %s; reconnecting in %.1f s", e, delay)
                finally:
                    self.stats.connected = False
                    self._client = None
                if stop.is_set():
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.config.reconnect_max)
        finally:
            await _cancel(self._lane_tasks)

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every question in flight to be answered and every
        message to be published. True if all were."""
        deadline = time.monotonic() + timeout
        while any(self._pending.values()) or (self._outbox and self.stats.connected):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def _make_client(self) -> aiomqtt.Client:
        c = self.config
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = SESSION_EXPIRY
        tls = None
        if c.tls is not None:
            tls = aiomqtt.TLSParameters(ca_certs=c.tls.ca, certfile=c.tls.cert,
                                        keyfile=c.tls.key, cert_reqs=ssl.CERT_REQUIRED)
        return aiomqtt.Client(
            c.host, c.port, username=c.username, password=c.password,
            identifier=c.client_id or f"streamvxl-{self.prefix.replace('/', '-')}",
            protocol=aiomqtt.ProtocolVersion.V5, keepalive=c.keepalive,
            will=aiomqtt.Will(f"{self.prefix}/available", b"offline", qos=1, retain=True),
            properties=connect, tls_params=tls, socket_options=NO_DELAY,
            tls_insecure=c.tls.insecure if c.tls is not None else None, timeout=10.0)

    async def _hello(self, client: aiomqtt.Client) -> None:
        """On every (re)connect: subscribe, say online, republish every status."""
        # no_local: not our own publications; retain_handling 2: no retained messages
        options = SubscribeOptions(qos=1, noLocal=True, retainHandling=2)
        await client.subscribe(f"{self.prefix}/#", options=options)
        await client.publish(f"{self.prefix}/available", b"online", qos=1, retain=True)
        for camera, status in list(self._status.items()):
            await client.publish(f"{self.prefix}/{camera}/status", encode(status), qos=1,
                                 retain=True)
        self._dirty.clear()

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """A clean stop: every camera offline, then the bridge (no last will on a clean
        disconnect, so it is said here)."""
        with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
            await self._flush(client, timeout=5.0)
            for camera in self.cameras:
                status = {**self._status.get(camera, {"camera": camera}), "state": "offline",
                          "at": time.time()}
                await client.publish(f"{self.prefix}/{camera}/status", encode(status), qos=1,
                                     retain=True)
            await client.publish(f"{self.prefix}/available", b"offline", qos=1, retain=True)
            log.info("MQTT: offline published; disconnecting")

    async def _serve(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        """Read requests and publish replies until the connection drops or ``stop``."""
        tasks = [asyncio.create_task(self._read(client)),
                 asyncio.create_task(self._write(client)),
                 asyncio.create_task(stop.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel(tasks)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                self._on_message(message)
            except Exception:  # noqa: BLE001 - one request's bug must not stop the bridge
                log.exception("MQTT: request on %s failed", message.topic)
                self._count_error("internal")

    async def _write(self, client: aiomqtt.Client) -> None:
        while True:
            await self._ready.wait()
            await self._flush(client)

    async def _flush(self, client: aiomqtt.Client, timeout: float | None = None) -> None:
        self._ready.clear()  # what arrives from here on sets it again
        for camera in list(self._dirty):
            self._dirty.discard(camera)
            await client.publish(f"{self.prefix}/{camera}/status",
                                 encode(self._status[camera]), qos=1, retain=True,
                                 timeout=timeout)
        while self._outbox:
            out = self._outbox[0]
            try:
                await client.publish(out.topic, out.payload, qos=out.qos, retain=out.retain,
                                     properties=out.properties, timeout=timeout)
            except ValueError as e:
                # paho refuses it (a topic it cannot take) before sending anything: resending
                # cannot help, and raised from here it would end `run` (the whole service)
                self._outbox.popleft()
                self.stats.unpublishable += 1
                log.error("MQTT: cannot publish to %r (%s); dropped", out.topic[:200], e)
                continue
            self._outbox.popleft()  # only once the broker has it: a drop mid-publish resends
            self.stats.published += 1

    # -- requests -------------------------------------------------------------------------------
    def _on_message(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else (
            str(message.payload).encode() if message.payload is not None else b"")
        levels = topic[len(self.prefix) + 1:].split("/") if topic.startswith(
            self.prefix + "/") else []
        if levels in (["available"], ["error"]) or (len(levels) == 2 and levels[1] in OUT_KINDS):
            return  # what bridges publish: not a request
        self.stats.requests += 1
        props = message.properties
        response = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        if response is not None and not is_topic_name(response):
            # mosquitto passes response topics with wildcards on; publishing to one raises
            asked = levels[0] if len(levels) == 2 and levels[1] == "ask" and \
                levels[0] in self._lanes else None
            self._refuse(payload, None, correlation, asked, RequestError(
                "bad_request", f"the response topic {response[:80]!r} is not a topic name "
                               "(UTF-8, no wildcards, <= 1024 chars)"))
            return
        if not (len(levels) == 2 and levels[1] == "ask"):
            self._refuse(payload, response, correlation, None, RequestError(
                "unknown_topic", f"{topic!r} is not a request topic; ask on "
                                 f"{self.prefix}/<camera>/ask (cameras: {self.cameras})"))
            return
        camera = levels[0]
        if camera not in self._lanes:
            self._refuse(payload, response, correlation, None, RequestError(
                "unknown_camera", f"no camera {camera!r}; cameras: {self.cameras}"))
            return
        try:
            request = parse_ask(payload, self.config.max_payload)
        except RequestError as e:
            self._refuse(payload, response, correlation, camera, e, read=False)
            return
        reply = _Reply(response or request.reply_to or f"{self.prefix}/{camera}/answer",
                       request.encoding, correlation)
        if self._pending[camera] >= self.config.max_pending:
            self._reply_error(reply, camera, request.request_id, "busy",
                              f"{self._pending[camera]} questions are waiting for {camera!r} "
                              f"(max_pending = {self.config.max_pending}); ask again later")
            return
        self._pending[camera] += 1
        # the task starts now, so questions reach the runtime in the order they arrived
        work = asyncio.ensure_future(self._ask(camera, request))
        self._lanes[camera].put_nowait((request, reply, work, time.monotonic()))

    async def _answer_in_order(self, camera: str) -> None:
        """Publish ``camera``'s answers in the order its questions arrived."""
        lane = self._lanes[camera]
        while True:
            request, reply, work, arrived = await lane.get()
            try:
                left = arrived + self.config.answer_timeout - time.monotonic()
                answer = await asyncio.wait_for(asyncio.shield(work), max(left, 0.001))
            except TimeoutError:
                self._reply_error(reply, camera, request.request_id, "timeout",
                                  f"no answer within {self.config.answer_timeout} s")
            except (QuestionError, ConfigError) as e:
                self._reply_error(reply, camera, request.request_id, "bad_request", str(e))
            except ClosedError as e:
                self._reply_error(reply, camera, request.request_id, "unavailable", str(e))
            except StreamVXLError as e:
                self._reply_error(reply, camera, request.request_id, "unavailable",
                                  f"{type(e).__name__}: {e}")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the model failed: say so, keep serving
                log.exception("answering %r on %s failed", request.question, camera)
                self._reply_error(reply, camera, request.request_id, "internal",
                                  f"{type(e).__name__}: {e}")
            else:
                if isinstance(answer, dict) and "error" in answer:  # a shard's error message
                    error = answer["error"]
                    self._reply_error(reply, camera, request.request_id, error["code"],
                                      error["message"])
                    continue
                self.stats.answers += 1
                message = answer if isinstance(answer, dict) else answer_message(
                    camera, request, answer)
                self._send(reply, {**message, "id": request.request_id})
            finally:
                self._pending[camera] -= 1

    def _refuse(self, payload: bytes, response: str | None, correlation: bytes | None,
                camera: str | None, error: RequestError, *, read: bool = True) -> None:
        """Answer a request that will not be asked with its error, wherever a reply can go.
        ``read``: read the id, reply_to and encoding from the payload (`parse_ask`'s errors
        carry them already)."""
        request_id, reply_to, encoding = error.request_id, error.reply_to, error.encoding
        if read:  # what can be read of it
            with contextlib.suppress(RequestError):
                value, encoding = decode(payload, self.config.max_payload)
                # (checked as parse_ask does: a reply_to with a lone surrogate, say, would
                # make the client raise when the error is published)
                request_id, reply_to = request_address(value)
        fallback = f"{self.prefix}/{camera}/answer" if camera else f"{self.prefix}/error"
        self._reply_error(_Reply(response or reply_to or fallback, encoding, correlation),
                          camera, request_id, error.code, error.message)

    def _reply_error(self, reply: _Reply, camera: str | None, request_id: str | int | None,
                     code: str, message: str) -> None:
        self._count_error(code)
        log.info("MQTT: %s request %s: %s", camera or "-", code, message)
        self._send(reply, error_message(code, message, request_id, camera))

    def _send(self, reply: _Reply, message: dict) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = CONTENT_TYPES[reply.encoding]
        if reply.correlation is not None:
            props.CorrelationData = reply.correlation
        self._enqueue(_Out(reply.topic, encode(message, reply.encoding), properties=props))

    def _count_error(self, code: str) -> None:
        self.stats.errors[code] += 1

    # -- the outbox (event loop thread) ---------------------------------------------------------
    def _enqueue(self, out: _Out) -> None:
        if len(self._outbox) >= self.config.outbox:
            self._outbox.popleft()
            self.stats.outbox_dropped += 1
            if self.stats.outbox_dropped in (1, 10, 100) or self.stats.outbox_dropped % 1000 == 0:
                log.warning("MQTT: outbox full (%d): %d messages dropped so far",
                            self.config.outbox, self.stats.outbox_dropped)
        self._outbox.append(out)
        self._ready.set()

    def _set_status(self, camera: str, status: dict) -> None:
        self._status[camera] = status
        self._dirty.add(camera)
        self._ready.set()


async def _cancel(tasks: list[asyncio.Task]) -> None:
    """Cancel ``tasks`` and wait until they have ended, cancelling again while any runs on.

    Once is not enough before Python 3.12: `asyncio.wait_for` (in aiomqtt's publish, and the
    answer timeout) swallows a cancellation that arrives as what it waits for completes. The
    writer then waited for its next message forever, and `_serve` with it: a clean stop hung
    until the service gave up after 15 s (1 stop in ~5 here), and a lost connection would
    hang the same way instead of reconnecting.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    for task in tasks:  # (retrieved, so that none is logged as "never retrieved")
        if not task.cancelled():
            task.exception()


def _refused_for_good(e: aiomqtt.MqttCodeError) -> bool:
    """A CONNACK refusal that a retry will not change (bad credentials, not authorized).
    Only a CONNACK's code counts: paho's own error codes share the numbers (4 is both "bad
    user name or password" and "not connected")."""
    rc = getattr(e.rc, "value", e.rc)
    return isinstance(e, MqttConnectError) and rc in (4, 5, 134, 135, 138, 140)


__all__ = ["BridgeStats", "MqttBridge"]
