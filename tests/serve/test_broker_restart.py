"""The broker dies (SIGKILL) and comes back on the same port while the service and its agents
are connected: the bridge retries with backoff without crashing, the camera keeps ingesting,
and once the broker is back the bridge says ``online`` again (retained), republishes its status,
answers every question asked after, and delivers what it computed while the broker was away."""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from streamvxl import Hub
from streamvxl.serve.config import parse_config
from tests.runtime.helpers import worker_held
from tests.serve.agent import MEMORY_TOML, Agent, Running, decode, next_message
from tests.serve.broker import Mosquitto, mosquitto_unavailable

BUDGETED = MEMORY_TOML.replace("ratio = 2", "ratio = 2\ntoken_budget = 2048")

pytestmark = pytest.mark.integration
if why := mosquitto_unavailable():
    pytest.skip(why, allow_module_level=True)

ASK = "site/door/ask"
INITIAL, MAXIMUM = 0.2, 1.6
"""The bridge's reconnect backoff here: 0.2, 0.4, 0.8, 1.6, 1.6, ... s (each +-20 %)."""
QUESTIONS = 20


def config_text(port: int) -> str:
    # health_seconds is long: the status a restarted broker holds is the bridge's republication
    return f"""
[mqtt]
port = {port}
prefix = "site"
reconnect_initial = {INITIAL}
reconnect_max = {MAXIMUM}
[serve]
health_seconds = 600
{BUDGETED}[cameras.door]
source = "lavfi:testsrc=size=64x48:rate=4"
fps = 4
realtime = true
"""


@pytest.fixture(scope="module")
def hub(tiny_checkpoint):
    with Hub.from_pretrained(tiny_checkpoint, device="cpu") as hub:
        yield hub


def until(condition, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def drain(*queues) -> None:
    for q in queues:
        while not q.empty():
            q.get()


class Retries(logging.Handler):
    """The delays a bridge logs before each reconnect attempt ("...; reconnecting in 0.4 s"),
    heard from its logger on the service's thread (``thread``; not another test's)."""

    def __init__(self, thread: threading.Thread) -> None:
        super().__init__(logging.WARNING)
        self.thread = thread
        self.delays: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread.ident:
            return
        if m := re.search(r"reconnecting in ([0-9.]+) s", record.getMessage()):
            self.delays.append(float(m.group(1)))


@contextlib.contextmanager
def serving(config, hub: Hub) -> Iterator[Running]:
    """`Running`, stopped however the test ends (a failed test's service would keep its
    camera's stream on the shared hub, and its bridge retrying)."""
    running = Running(config, hub)
    try:
        yield running
    finally:
        if running.thread.is_alive():
            running.close()


def ask_many(v5: Agent, v311: Agent, n: int, tag: str) -> None:
    """``n`` questions from both agents (MQTT 5 and 3.1.1, JSON and msgpack), all sent before
    any answer is read: each is answered, once."""
    sent, inboxes = {}, {}
    for i in range(n):
        agent = v5 if i % 2 == 0 else v311
        body = {"question": f"What happened ({tag} {i})?", "max_new_tokens": 2,
                "id": f"{tag}-{i}"}
        correlation, inboxes[agent] = agent.request(
            ASK, body, encoding=("json", "msgpack")[i % 4 // 2],
            reply=f"agents/{'v5' if agent is v5 else 'v3'}")
        sent[body["id"]] = correlation if agent is v5 else None
    got: dict[str, list] = {}
    deadline = time.monotonic() + 60
    while len(got) < n:
        assert time.monotonic() < deadline, f"unanswered: {sorted(set(sent) - set(got))}"
        for q in inboxes.values():
            with contextlib.suppress(queue.Empty):
                message = q.get(timeout=0.05)
                got.setdefault(decode(message.payload)["id"], []).append(message)
    time.sleep(0.3)  # a second reply would come by now
    for q in inboxes.values():
        while not q.empty():
            message = q.get()
            got.setdefault(decode(message.payload)["id"], []).append(message)
    assert sorted(got) == sorted(sent) and all(len(m) == 1 for m in got.values())
    for request_id, (message,) in got.items():
        answer = decode(message.payload)
        assert "error" not in answer and isinstance(answer["text"], str), answer
        if sent[request_id] is not None:
            assert message.properties.CorrelationData == sent[request_id]


def test_the_bridge_recovers_from_broker_crashes_by_itself(hub, tmp_path) -> None:
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        broker = Mosquitto(tmp_path / "broker").start()
        stack.callback(broker.stop)
        running = stack.enter_context(serving(parse_config(config_text(broker.port)), hub))
        bridge = running.service.bridge
        door = running.service.cameras["door"]
        retries = Retries(running.thread)
        logging.getLogger("streamvxl.serve.bridge").addHandler(retries)
        stack.callback(logging.getLogger("streamvxl.serve.bridge").removeHandler, retries)
        v5, v311, watcher = Agent(broker.port), Agent(broker.port, v5=False), Agent(broker.port)
        for agent in (v5, v311, watcher):
            stack.callback(agent.close)
        available = watcher.listen("site/available")
        events = watcher.listen("site/door/event")
        assert next_message(available, 30).payload == b"online"
        ask_many(v5, v311, 2, "before")
        for restart in (1, 2):
            retries.delays.clear()
            frames = door.stream.stats().frames_seen
            broker.kill()
            until(lambda: not bridge.stats.connected, what="the bridge to see the broker gone")
            for agent in (v5, v311, watcher):
                until(lambda a=agent: not a.connected.is_set(), what="the agents to see it")
            time.sleep(3.0)  # the broker stays away; the bridge retries meanwhile

            # nothing crashed, the camera kept ingesting, the retries backed off
            assert running.thread.is_alive() and running.result is None
            assert door.state == "streaming" and door.stream.stats().frames_seen > frames + 4
            delays = list(retries.delays)
            assert len(delays) >= 3, delays
            assert delays == [min(INITIAL * 2**k, MAXIMUM) for k in range(len(delays))]
            assert bridge.stats.connects == restart

            drain(available, events)
            broker.start()  # same port, and no memory of anyone: no sessions, nothing retained
            # the bridge comes back by itself and says so (retained, so any order works)
            assert next_message(available, 30).payload == b"online"
            assert bridge.stats.connects == restart + 1
            for agent in (v5, v311):
                assert agent.connected.wait(30)
            ask_many(v5, v311, QUESTIONS, f"restart{restart}")

            # the status, retained on the new broker: the bridge republished it
            late = Agent(broker.port)
            message = next_message(late.listen("site/door/status"), 10)
            late.close()
            status = decode(message.payload)
            assert message.retain and status["camera"] == "door"
            assert status["state"] == "streaming"
            # intervals stored from now on are told as events
            stored = door.stream.stats().intervals_closed
            event = decode(next_message(events, 30, lambda m, n=stored: decode(m.payload)[
                "interval"] >= n).payload)
            assert event["camera"] == "door" and event["t_end"] > event["t_start"]
        assert bridge.stats.answers == 2 + 2 * QUESTIONS and not bridge.stats.errors
        assert bridge.stats.outbox_dropped == bridge.stats.unpublishable == 0
        assert running.close() == 0
        print(f"\ntwo broker crashes survived in {time.monotonic() - started:.1f} s")


class Gate:
    """A TCP relay to the broker that the test opens and shuts: while shut, every connection
    is accepted, held ``hold`` s without a byte and dropped (to the bridge, a broker still
    starting, or a proxy with no broker behind it), so the test decides when the bridge may
    reconnect."""

    def __init__(self, target: int, hold: float = 0.0) -> None:
        self.target, self.hold = target, hold
        self.refused = 0
        self.open = threading.Event()
        self.open.set()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                if not self.open.is_set():
                    self.refused += 1
                    threading.Timer(self.hold, conn.close).start()
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                conn.close()
                continue
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):  # one side gone: so is the other
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


def test_an_answer_computed_while_the_broker_is_away_is_delivered_after(hub, tmp_path) -> None:
    """Deterministic: the worker is held until the broker is dead, so the answer can only be
    made while it is away; the gate keeps the bridge out until the agent is back and
    subscribed, so the answer can only come from the bridge's outbox. The shut gate accepts
    and holds each attempt before dropping it: a socket that answers no CONNECT is neither a
    connection nor a refusal of the credentials (an aiomqtt client reused after a dropped
    connection took it for both)."""
    with contextlib.ExitStack() as stack:
        broker = Mosquitto(tmp_path / "broker").start()
        stack.callback(broker.stop)
        gate = Gate(broker.port, hold=0.5)
        stack.callback(gate.close)
        running = stack.enter_context(serving(parse_config(config_text(gate.port)), hub))
        bridge = running.service.bridge
        door = running.service.cameras["door"]
        agent = Agent(broker.port)
        stack.callback(agent.close)
        replies = agent.listen("agents/late")
        until(lambda: bridge.stats.connected, what="the bridge to connect")
        with worker_held(door.stream):
            correlation, _ = agent.request(ASK, {"question": "What happened?", "id": "late",
                                                 "max_new_tokens": 2}, reply="agents/late")
            until(lambda: bridge.stats.requests == 1, what="the bridge to take the question")
            gate.open.clear()
            broker.kill()
            until(lambda: not bridge.stats.connected, what="the bridge to see the broker gone")
            assert bridge.stats.answers == 0
        # the worker is free: the answer is made now, with no broker to take it
        until(lambda: bridge.stats.answers == 1, what="the answer")
        assert not bridge.stats.connected
        broker.start()
        assert agent.connected.wait(30)
        agent.publish("agents/late", b"probe")  # the agent is subscribed again once this is back
        assert next_message(replies, 10).payload == b"probe"
        until(lambda: gate.refused >= 1, what="the bridge to try the shut gate")
        time.sleep(0.7)  # past the hold: that attempt's socket is gone
        assert not bridge.stats.connected and bridge.stats.connects == 1
        assert running.thread.is_alive() and running.result is None
        gate.open.set()
        message = next_message(replies, 30)
        answer = decode(message.payload)
        assert answer["id"] == "late" and isinstance(answer["text"], str) and "error" not in answer
        assert message.properties.CorrelationData == correlation
        assert bridge.stats.connects == 2 and bridge.stats.outbox_dropped == 0
        # and the bridge serves as before
        assert "text" in agent.ask(ASK, {"question": "And now?", "max_new_tokens": 2})
        assert running.close() == 0
