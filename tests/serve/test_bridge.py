"""The MQTT bridge end to end over a real mosquitto: questions over MQTT 5 and 3.1.1 get what
`ask` gives; events, alerts, retained status and availability behave as documented."""

from __future__ import annotations

import queue
import time

import pytest

from streamvxl import Hub
from streamvxl.serve.config import parse_config
from tests.runtime.helpers import worker_held
from tests.serve.agent import MEMORY_TOML, Agent, Running, decode, next_message
from tests.serve.broker import Mosquitto, mosquitto_unavailable

pytestmark = pytest.mark.integration
if why := mosquitto_unavailable():
    pytest.skip(why, allow_module_level=True)

QUESTION = "What colour is the car?"


def config_text(port: int, prefix: str = "site", source: str | None = None,
                extra: str = "", memory: str = MEMORY_TOML) -> str:
    source = source or "lavfi:testsrc=size=64x48:rate=4:duration=6"
    return f"""
[mqtt]
port = {port}
prefix = "{prefix}"
[serve]
health_seconds = 0.5
{memory}[cameras.door]
source = "{source}"
fps = 4
{extra}
"""


@pytest.fixture(scope="module")
def hub(tiny_checkpoint):
    with Hub.from_pretrained(tiny_checkpoint, device="cpu") as hub:
        yield hub


@pytest.fixture
def serve(hub):
    """Start a service on the shared hub; whatever the test does, it is stopped after (a
    failed test must not leave its streams on the hub for the next one)."""
    started: list[Running] = []

    def start(text: str) -> Running:
        started.append(Running(parse_config(text), hub))
        return started[-1]

    yield start
    for running in started:
        if running.thread.is_alive():
            running.close()


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        yield broker


def until(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)


def test_answers_over_mqtt5_and_311_are_those_of_ask(serve, broker) -> None:
    watching = Agent(broker.port)
    events, statuses = watching.listen("site/door/event"), watching.listen("site/door/status")
    running = serve(config_text(broker.port))
    door = running.service.cameras["door"]
    until(lambda: door.state == "ended", what="the file to end")
    door.stream.wait()
    direct = door.stream.ask(QUESTION, max_new_tokens=12)
    v5, v311 = Agent(broker.port), Agent(broker.port, v5=False)
    a5 = v5.ask("site/door/ask", {"question": QUESTION, "max_new_tokens": 12, "id": "q1"})
    a3 = v311.ask("site/door/ask", {"question": QUESTION, "max_new_tokens": 12, "id": 7},
                  encoding="msgpack")
    for answer, request_id in ((a5, "q1"), (a3, 7)):
        assert answer["id"] == request_id and answer["camera"] == "door"
        assert answer["text"] == direct.text and answer["finished"] == direct.finished
        assert [(s["t_start"], s["t_end"], s["ratio"]) for s in answer["intervals"]] == [
            (s.t_start, s.t_end, s.ratio) for s in direct.intervals]
        assert answer["context_tokens"] == direct.context_tokens
        assert [(c["t_start"], c["t_end"], c["interval"]) for c in answer["cited"]] == [
            (c.t_start, c.t_end, c.interval) for c in direct.cited] != []
        assert 0 < answer["timings"]["first_token"] <= answer["timings"]["total"]
        assert answer["timings"]["cite"] > 0
    # the evidence pass is the agent's to skip: the same text, nothing cited, no time spent
    bare = v5.ask("site/door/ask", {"question": QUESTION, "max_new_tokens": 12, "cite": False,
                                    "retrieve": False})
    assert bare["text"] == direct.text and bare["cited"] == [] and bare["timings"]["cite"] == 0
    # every stored interval was an event, with the span the memory holds
    stats = door.stream.stats()
    told = [decode(next_message(events, 10).payload) for _ in range(stats.intervals_closed)]
    assert [e["interval"] for e in told] == list(range(stats.intervals_closed))
    assert [(e["t_start"], e["t_end"], e["ratio"]) for e in told] == [
        (r.t_start, r.t_end, r.ratio) for r in door.stream.intervals]
    assert events.empty()
    # the retained status: a late subscriber gets the newest at once
    late = Agent(broker.port)
    status = decode(next_message(late.listen("site/door/status"), 10).payload)
    assert status["state"] == "ended" and status["frames_seen"] == stats.frames_seen == 24
    assert status["intervals"] == stats.intervals_closed
    assert not statuses.empty()
    available = late.listen("site/available")
    assert next_message(available, 10).payload == b"online"
    assert running.close() == 0
    # a clean stop says offline: the bridge (retained) and the camera's status
    assert next_message(available, 10).payload == b"offline"
    final = decode(next_message(statuses, 10, lambda m: b'"offline"' in m.payload).payload)
    assert final["camera"] == "door" and final["frames_seen"] == 24
    after = Agent(broker.port)
    assert next_message(after.listen("site/available"), 10).payload == b"offline"
    for agent in (watching, v5, v311, late, after):
        agent.close()


def test_an_agent_asks_with_or_without_retrieval(serve, broker) -> None:
    """A camera whose older intervals left the GPU for the host: ``retrieve`` over MQTT chooses
    what its question reads exactly as ``ask(retrieve=...)`` does."""
    tiers = MEMORY_TOML.replace("ratio = 2\n", 'ratio = 2\ntoken_budget = 40\n'
                                'eviction = "offload"\n[memory.retrieval]\nbudget = 30\n')
    running = serve(config_text(broker.port, memory=tiers))
    door = running.service.cameras["door"]
    until(lambda: door.state == "ended", what="the file to end")
    door.stream.wait()
    stats = door.stream.stats()
    assert stats.intervals_on_host > 0 and stats.intervals_evicted == 0
    agent = Agent(broker.port)
    spans = {}
    for retrieve in (True, False):
        direct = door.stream.ask(QUESTION, max_new_tokens=6, retrieve=retrieve)
        served = agent.ask("site/door/ask", {"question": QUESTION, "max_new_tokens": 6,
                                             "retrieve": retrieve})
        assert served["text"] == direct.text and served["candidates"] == direct.candidates
        assert [(s["t_start"], s["t_end"]) for s in served["intervals"]] == [
            (s.t_start, s.t_end) for s in direct.intervals]
        spans[retrieve] = [(s.t_start, s.t_end) for s in direct.intervals]
    assert spans[True] != spans[False]  # the GPU tier alone is not what retrieval read
    assert running.close() == 0
    agent.close()


def test_alerts_arrive_with_the_span_and_score(serve, broker) -> None:
    watch = """
[[cameras.door.watch]]
condition = "a car is in the picture"
threshold = -1000.0
hysteresis = 0.0
"""
    agent = Agent(broker.port)
    alerts = agent.listen("site/door/alert")
    running = serve(config_text(broker.port, extra=watch))
    alert = decode(next_message(alerts, 60).payload)
    door = running.service.cameras["door"]
    assert alert["condition"] == "a car is in the picture" and alert["state"] == "on"
    assert alert["interval"] == 0 and alert["score"] > -1000.0
    first = door.stream.intervals[0]
    assert (alert["t_start"], alert["t_end"]) == (first.t_start, first.t_end)
    until(lambda: door.state == "ended")
    door.stream.wait()
    with pytest.raises(queue.Empty):  # on once, never off: one alert
        alerts.get(timeout=0.5)
    status = door.status()
    assert status["conditions_on"] == ["a car is in the picture"]
    assert running.close() == 0
    agent.close()


def test_answers_of_one_camera_come_in_the_order_asked(serve, broker) -> None:
    running = serve(config_text(broker.port))
    agent = Agent(broker.port)
    replies = agent.listen("agents/order")
    for i in range(40):
        body = {"question": f"Question number {i}?", "id": i, "max_new_tokens": 2}
        agent.request("site/door/ask", body, reply="agents/order")
    got = [decode(next_message(replies, 60).payload)["id"] for _ in range(40)]
    assert got == list(range(40))
    assert running.service.bridge.stats.answers == 40
    assert running.close() == 0
    agent.close()


def test_credentials_and_tls(serve, tmp_path) -> None:
    with Mosquitto(tmp_path / "tls", users={"agent": "s3cret"}, tls=True) as broker:
        (tmp_path / "mqtt.pass").write_text("s3cret\n")
        extra = f"""
[mqtt.tls]
ca = "{broker.ca}"
"""
        text = config_text(broker.port, extra="").replace(
            "[serve]", f'username = "agent"\npassword_file = "{tmp_path / "mqtt.pass"}"\n'
                       f'[mqtt.tls]\nca = "{broker.ca}"\n[serve]')
        assert extra  # (the table goes under [mqtt], above)
        running = serve(text)
        tls = {"ca_certs": str(broker.ca)}
        agent = Agent(broker.port, username="agent", password="s3cret", tls=tls)
        answer = agent.ask("site/door/ask", {"question": QUESTION, "max_new_tokens": 4})
        assert "text" in answer and answer["camera"] == "door"
        assert running.close() == 0
        agent.close()
        # a wrong password is refused for good: the service stops with a ConfigError
        bad = text.replace(f'password_file = "{tmp_path / "mqtt.pass"}"', 'password = "nope"')
        failed = serve(bad)
        failed.thread.join(30)
        assert type(failed.result).__name__ == "ConfigError"
        assert "refused" in str(failed.result)


def test_too_many_waiting_is_busy_and_a_slow_answer_times_out(serve, broker) -> None:
    limits = config_text(broker.port).replace("[serve]", "max_pending = 2\nanswer_timeout = 1.0\n[serve]")
    running = serve(limits)
    door = running.service.cameras["door"]
    until(lambda: door.state == "ended")
    door.stream.wait()
    agent = Agent(broker.port)
    replies = agent.listen("agents/limits")
    with worker_held(door.stream):  # nothing is answered meanwhile
        for i in range(3):
            agent.request("site/door/ask", {"question": QUESTION, "id": i}, reply="agents/limits")
        got = [decode(next_message(replies, 10).payload) for _ in range(3)]
    codes = {g["id"]: g["error"]["code"] for g in got}
    assert codes == {2: "busy", 0: "timeout", 1: "timeout"}  # busy at once, then the timeouts
    assert "max_pending = 2" in got[0]["error"]["message"]
    time.sleep(1.0)  # the held questions are answered now: no second reply for them
    assert replies.empty()
    assert agent.ask("site/door/ask", {"question": QUESTION, "max_new_tokens": 2})["text"] \
        is not None  # and the camera answers again
    assert running.close() == 0
    agent.close()
