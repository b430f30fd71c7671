"""The bridge under a storm of 10,000 generated requests (`tests.serve.storm`, seeded):
random bytes, bad UTF-8, wrong top-level types, fields of the wrong type or out of range,
missing and unknown fields, requests past ``max_payload``, deep nesting, unknown cameras, topics
outside the scheme, bad response topics, and a few valid questions among them -- over MQTT 5
(response topic + correlation data, or correlation data alone) and MQTT 3.1.1 (``reply_to``).

Properties: every request that has a reply topic gets exactly one reply, where it should go; an
error names a code that fits what was wrong and says why; a valid question gets an answer; what
is not a request gets nothing; the bridge's counts agree with what was sent; nothing crashes,
and a plain question is answered after the storm.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streamvxl import Hub
from streamvxl.serve.config import parse_config
from tests.serve.agent import MEMORY_TOML, Agent, Running, decode, next_message
from tests.serve.broker import Mosquitto, mosquitto_unavailable
from tests.serve.storm import (
    AMBIGUOUS,
    ANSWERS,
    ASK,
    COUNT,
    DECOY,
    ERRORS,
    MAX_PAYLOAD,
    NO_ID,
    SEED,
    Case,
    Storm,
)

pytestmark = pytest.mark.integration
if why := mosquitto_unavailable():
    pytest.skip(why, allow_module_level=True)


def config_text(port: int) -> str:
    return f"""
[mqtt]
port = {port}
prefix = "site"
max_payload = {MAX_PAYLOAD}
max_pending = 100000
answer_timeout = 600
[serve]
health_seconds = 5
{MEMORY_TOML}[cameras.door]
source = "lavfi:testsrc=size=64x48:rate=4:duration=6"
fps = 4
"""


# -- the test -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hub(tiny_checkpoint):
    with Hub.from_pretrained(tiny_checkpoint, device="cpu") as hub:
        yield hub


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


def test_the_generator_covers_every_kind() -> None:
    """The storm is what the test below claims: 10,000 requests, every kind and address."""
    storm = Storm(SEED)
    cases = [storm.case(i) for i in range(COUNT)]
    kinds = Counter(c.kind for c in cases)
    assert set(kinds) == {k.__name__ for k, _ in storm.kinds} and min(kinds.values()) >= 15
    codes = Counter(code for c in cases for code in c.body.codes)
    assert set(codes) == {"answer", "bad_payload", "too_large", "bad_request", "unknown_camera",
                          "unknown_topic"}
    assert 100 <= codes["answer"] <= 400  # enough to matter, few enough for 2 CPU cores
    assert Counter(c.sender for c in cases)["v3"] > 1000
    assert sum(not c.matched and c.sender == "v3" for c in cases) > 200
    assert sum(not c.matched and c.sender != "v3" for c in cases) > 100
    assert sum(c.response is None and c.correlation is not None for c in cases) > 500
    assert max(len(c.payload) for c in cases) > MAX_PAYLOAD
    again = Storm(SEED)  # seeded: the same storm every run
    assert [c.payload for c in cases[:50]] == [again.case(i).payload for i in range(50)]


@pytest.mark.slow
def test_a_storm_of_bad_requests_is_answered_and_crashes_nothing(hub, tmp_path) -> None:
    storm = Storm(SEED)
    cases = [storm.case(i) for i in range(COUNT)]
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(Mosquitto(tmp_path / "broker"))
        running = stack.enter_context(serving(parse_config(config_text(broker.port)), hub))
        door = running.service.cameras["door"]
        deadline = time.monotonic() + 60
        while door.state != "ended":
            assert time.monotonic() < deadline, "the source did not end"
            time.sleep(0.05)
        door.stream.wait()
        bridge = running.service.bridge
        agents = {"v5a": Agent(broker.port), "v5b": Agent(broker.port),
                  "v3": Agent(broker.port, v5=False)}
        watcher = Agent(broker.port)
        for agent in (*agents.values(), watcher):
            stack.callback(agent.close)
        replies: queue.Queue = queue.Queue()  # every reply, whoever receives it
        for agent, topic in ((agents["v5a"], "fuzz/v5a"), (agents["v5b"], "fuzz/v5b"),
                             (agents["v3"], "fuzz/v3/#"), (watcher, ANSWERS), (watcher, ERRORS),
                             (watcher, DECOY)):
            agent.listen(topic)
            agent.inbox[topic] = replies

        # the storm: every request published without waiting for the one before
        started = time.monotonic()
        sent = []
        for case in cases:
            props = None
            if case.sender != "v3":
                props = Properties(PacketTypes.PUBLISH)
                if case.response:
                    props.ResponseTopic = case.response
                if case.correlation is not None:
                    props.CorrelationData = case.correlation
            sent.append(agents[case.sender].client.publish(case.topic, case.payload, qos=1,
                                                           properties=props))
        for info in sent:
            info.wait_for_publish(60)
        published = time.monotonic() - started

        # every reply, matched to its request
        by_correlation = {c.correlation: c for c in cases if c.correlation is not None}
        by_topic = {c.expect_topic: c for c in cases if c.sender == "v3" and c.matched}
        anonymous, strays = [], []
        expected = sum(c.expect_topic is not None for c in cases)
        received = 0
        deadline = time.monotonic() + 180
        while received < expected and time.monotonic() < deadline:
            try:
                message = replies.get(timeout=1.0)
            except queue.Empty:
                assert running.thread.is_alive(), f"the service died: {running.result!r}"
                continue
            if message.payload.startswith(b"ignored:"):
                continue  # a not-a-request, published by an agent onto ANSWERS / ERRORS
            received += 1
            correlation = getattr(message.properties, "CorrelationData", None)
            case = (by_correlation.get(correlation) if correlation is not None else
                    by_topic.get(message.topic))
            if case is not None:
                case.replies.append(message)
            elif message.topic in (ANSWERS, ERRORS) and correlation is None:
                anonymous.append(message)
            else:
                strays.append(message)
        answered = time.monotonic() - started
        time.sleep(1.0)  # anything more would be a duplicate
        while not replies.empty():
            message = replies.get()
            if not message.payload.startswith(b"ignored:"):
                strays.append(message)
        shown = [(m.topic, m.payload[:80]) for m in strays[:5]]
        assert received == expected and not strays, f"{received} of {expected}; strays {shown}"

        # no crash: the service still runs, and a plain question is still answered
        assert running.thread.is_alive() and running.result is None
        correlation, replies = agents["v5a"].request(
            ASK, {"question": "What colour is the car?", "max_new_tokens": 4, "id": "after"},
            reply="fuzz/v5a")
        after = decode(next_message(replies, 60, lambda m: m.properties.CorrelationData ==
                                    correlation).payload)
        assert after["id"] == "after" and isinstance(after["text"], str)

        # each request got its one reply where it should, saying what it should
        codes: Counter = Counter()
        for case in cases:
            if case.expect_topic is None:
                assert case.replies == [], f"a reply to a non-request: {case}"
                continue
            if not case.matched:
                continue
            assert len(case.replies) == 1, (case.kind, case.topic, case.payload[:200],
                                            len(case.replies))
            message = case.replies[0]
            assert message.topic == case.expect_topic, (case.kind, message.topic, case.payload[:200])
            codes[check_reply(case, message)] += 1
        expected_anonymous = Counter((c.expect_topic, next(iter(c.body.codes))) for c in cases
                                     if not c.matched)
        got_anonymous = Counter((m.topic, reply_code(decode(m.payload))) for m in anonymous)
        assert got_anonymous == expected_anonymous
        codes.update(code for _, code in got_anonymous.elements())

        # the bridge's counts agree with what was sent and what came back
        stats = bridge.stats
        requests = [c for c in cases if c.expect_topic is not None]
        assert stats.requests == len(requests) + 1  # and the question after
        assert stats.answers == codes.pop("answer") + 1
        assert dict(stats.errors) == dict(codes)
        assert "internal" not in stats.errors
        assert stats.outbox_dropped == stats.unpublishable == 0 and stats.connects == 1
        print(f"\n{COUNT} requests published in {published:.1f} s, all {expected} replies in "
              f"{answered:.1f} s; errors {dict(stats.errors)}, {stats.answers} answers")

        assert running.close() == 0


def check_reply(case: Case, message) -> str:
    """The reply fits its request: its code (or "answer"), after checking its fields."""
    content_type = getattr(message.properties, "ContentType", None)
    reply = decode(message.payload)
    if content_type is not None:  # (MQTT 5 receivers)
        assert content_type == ("application/json" if message.payload[:1] == b"{" else
                                "application/msgpack")
    body = case.body
    if body.value is not None and body.readable and body.codes != AMBIGUOUS:
        encoding = "json" if message.payload[:1] == b"{" else "msgpack"
        assert encoding == body.encoding, (case.kind, case.payload[:100])  # the same encoding
    if body.request_id is not NO_ID:
        assert reply["id"] == body.request_id, (case.kind, reply, case.payload[:200])
    if "error" in reply:
        code = reply_code(reply)
        assert code in body.codes, (case.kind, case.topic, reply, case.payload[:200])
        assert reply["camera"] == ("door" if case.topic == ASK else None)
        return code
    assert "answer" in body.codes, (case.kind, reply, case.payload[:200])
    assert reply["camera"] == "door" and reply["question"] == body.question
    assert isinstance(reply["text"], str) and isinstance(reply["finished"], bool)
    assert isinstance(reply["intervals"], list) and reply["timings"]["total"] > 0
    return "answer"


def reply_code(reply: dict) -> str:
    """An error's code (after checking it says why), or "answer"."""
    if "error" not in reply:
        assert isinstance(reply["text"], str), reply
        return "answer"
    error = reply["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert error["message"].strip(), reply
    return error["code"]
