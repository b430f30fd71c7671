"""What the serve tests drive: a `Service` on its own event loop thread, and an agent -- a plain
paho-mqtt client speaking MQTT 5 (response topic + correlation data) or 3.1.1 (``reply_to``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import socket
import threading
import time
import uuid
from typing import Any

import msgpack
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streamvxl.runtime.hub import Hub
from streamvxl.serve import ServeConfig, Service

MEMORY_TOML = """[memory]
ratio = 2
[memory.boundary]
window = 2
threshold = 0.02
min_frames = 3
max_frames = 6
"""
"""The serve tests' memories on the tiny checkpoint: intervals of at most 6 frames at r = 2 (a
24-frame clip is four intervals)."""


class Running:
    """``Service(config, hub)`` running on a thread of its own until `close`."""

    def __init__(self, config: ServeConfig, hub: Hub | None = None) -> None:
        self.service = Service(config, hub)
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.result: Any = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        if not self.service.started.wait(120):
            raise RuntimeError(f"the service did not start: {self.result!r}")

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.result = self.loop.run_until_complete(self.service.run(self.stop))
        except BaseException as e:  # noqa: BLE001 - the test reads it
            self.result = e
            self.service.started.set()

    def close(self, timeout: float = 60.0) -> Any:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the service did not stop"
        return self.result


class Agent:
    """An MQTT client with a queue per subscription. ``v5``: MQTT 5, else 3.1.1."""

    _ids = itertools.count()

    def __init__(self, port: int, *, v5: bool = True, username: str | None = None,
                 password: str | None = None, tls: dict | None = None,
                 reconnect: bool = True) -> None:
        self.v5 = v5
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id=f"agent-{next(self._ids)}-{uuid.uuid4().hex[:6]}",
                                  protocol=paho.MQTTv5 if v5 else paho.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(**tls)
        self.inbox: dict[str, queue.Queue] = {}
        self.connected = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), "the agent could not connect"

    def _on_connect(self, client, userdata, flags, rc, properties=None) -> None:
        sock = client.socket()
        if sock is not None:  # small requests go out at once (no Nagle wait)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for topic in self.inbox:  # a restarted broker forgot them
            client.subscribe(topic, qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, message) -> None:
        for pattern, q in list(self.inbox.items()):
            if paho.topic_matches_sub(pattern, message.topic):
                q.put(message)

    def listen(self, topic: str) -> queue.Queue:
        self.inbox[topic] = q = queue.Queue()
        result, mid = self.client.subscribe(topic, qos=1)
        assert result == paho.MQTT_ERR_SUCCESS
        time.sleep(0.2)  # the SUBACK
        return q

    def publish(self, topic: str, payload: bytes, *, response_topic: str | None = None,
                correlation: bytes | None = None) -> None:
        props = None
        if self.v5 and (response_topic or correlation):
            props = Properties(PacketTypes.PUBLISH)
            if response_topic:
                props.ResponseTopic = response_topic
            if correlation:
                props.CorrelationData = correlation
        self.client.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)

    def request(self, topic: str, body: dict | bytes, *, encoding: str = "json",
                reply: str | None = None) -> tuple[bytes, queue.Queue]:
        """Send a request expecting a reply on ``reply`` (a fresh topic by default) -- as a
        response topic with correlation data over MQTT 5, as ``reply_to`` over 3.1.1.
        Returns the correlation data and the reply queue."""
        reply = reply or f"agents/{self.client._client_id.decode()}/{uuid.uuid4().hex[:8]}"
        q = self.inbox.get(reply) or self.listen(reply)
        correlation = uuid.uuid4().bytes
        if isinstance(body, dict):
            if not self.v5:
                body = {**body, "reply_to": reply}
            payload = encode(body, encoding)
        else:
            payload = body
        self.publish(topic, payload, response_topic=reply if self.v5 else None,
                     correlation=correlation if self.v5 else None)
        return correlation, q

    def ask(self, topic: str, body: dict, *, encoding: str = "json", timeout: float = 60.0,
            reply: str | None = None) -> dict:
        """One question, its reply (``reply``: a topic to reuse; a fresh one costs a
        subscription round trip)."""
        correlation, q = self.request(topic, body, encoding=encoding, reply=reply)
        message = q.get(timeout=timeout)
        if self.v5:
            assert message.properties.CorrelationData == correlation
        return decode(message.payload)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def encode(body: dict, encoding: str = "json") -> bytes:
    return msgpack.packb(body) if encoding == "msgpack" else json.dumps(body).encode()


def decode(payload: bytes) -> dict:
    if payload[:1] == b"{":
        return json.loads(payload)
    return msgpack.unpackb(payload, raw=False)


def next_message(q: queue.Queue, timeout: float = 30.0, where=None) -> Any:
    """The next message on ``q`` (matching ``where``, if given), within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        message = q.get(timeout=max(0.01, deadline - time.monotonic()))
        if where is None or where(message):
            return message
