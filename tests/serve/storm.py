"""The fuzz test's storm: a seeded generator (`random.Random` only) of requests to the bridge,
each with what must come back and where -- random bytes, bad UTF-8, wrong top-level types,
fields of the wrong type or out of range, missing and unknown fields, requests past
``max_payload``, deep nesting, unknown cameras, topics outside the scheme, bad response topics,
what is not a request at all, and a few valid questions -- addressed over MQTT 5 (response
topic + correlation data, correlation data alone, or neither) or MQTT 3.1.1 (``reply_to``)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import msgpack

SEED = 20240917
COUNT = 10_000
MAX_PAYLOAD = 24 * 1024
"""Room for 10,000 levels of JSON nesting (20 KB); small enough that oversized requests are
cheap to send."""
ASK = "site/door/ask"
ANSWERS, ERRORS = "site/door/answer", "site/error"
DECOY = "fuzz/decoy"
"""A ``reply_to`` beside a response topic: the response topic wins, so nothing comes here."""
NO_ID = object()
"""A request whose reply's ``id`` is not checked."""
AMBIGUOUS = frozenset({"bad_request", "bad_payload"})
"""Nesting between ~500 and ~1100 levels: whether the decoder (bad_payload) or the field check
(bad_request) refuses it depends on the recursion limit and the stack already in use."""

WORDS = ("car", "door", "red", "who", "came", "in", "when", "truck", "left", "blue", "how",
         "many", "people", "déjà", "vu", "門", "🚚", "the", "a", "what", "colour")


@dataclass
class Body:
    """A generated payload: a mapping to encode (``reply_to`` may be added to it when it is
    addressed) with an optional raw extra field, or bytes as they are."""

    codes: frozenset[str]
    """What may come back: {"answer"} or error codes."""
    value: dict | None = None
    encoding: str = "json"
    extra: tuple[Any, bytes] | None = None
    """A field whose value is raw JSON / msgpack (deep nesting, literals json cannot write)."""
    raw: bytes | None = None
    request_id: Any = NO_ID
    """The ``id`` the reply carries (None: none; NO_ID: unchecked)."""
    question: str | None = None
    readable: bool = True
    """The bridge can read a ``reply_to`` added to it (it decodes, and is not too large)."""
    own_reply_to: bool = False
    """It sets ``reply_to`` itself (an invalid one): none is added."""
    v311: bool = True
    """It may go over MQTT 3.1.1 (False where ``readable`` is not known in advance)."""
    pad_to: int | None = None
    """Pad the JSON with spaces to exactly this many bytes."""


@dataclass
class Case:
    index: int
    kind: str
    topic: str
    payload: bytes
    body: Body
    sender: str
    """Which agent publishes it: v5a, v5b (MQTT 5) or v3 (3.1.1)."""
    response: str | None = None
    correlation: bytes | None = None
    expect_topic: str | None = None
    """Where its one reply arrives; None: no reply at all (not a request of the bridge)."""
    matched: bool = True
    """Its reply can be told apart (correlation data or a reply topic of its own); else it is
    counted among the anonymous replies on `ANSWERS` / `ERRORS`."""
    replies: list = field(default_factory=list)


def encode_body(body: Body) -> bytes:
    if body.raw is not None:
        return body.raw
    value = body.value
    if body.encoding == "json":
        text = json.dumps(value).encode()
        if body.extra is not None:
            key, raw = body.extra
            text = text[:-1] + (b", " if value else b"") + json.dumps(key).encode() + b": " + \
                raw + b"}"
        if body.pad_to is not None:
            assert len(text) <= body.pad_to
            text = text[:-1] + b" " * (body.pad_to - len(text)) + b"}"
        return text
    n = len(value) + (body.extra is not None)
    header = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
    items = b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in value.items())
    if body.extra is not None:
        items += msgpack.packb(body.extra[0]) + body.extra[1]
    return header + items


def decodes_to_map(payload: bytes) -> bool:
    """Whether the bridge could read ``payload`` as a mapping (generated garbage that happens to
    be one is made again)."""
    for load in (lambda p: json.loads(p.decode()), lambda p: msgpack.unpackb(p, raw=False)):
        try:
            if isinstance(load(payload), dict):
                return True
        except Exception:  # noqa: BLE001 - not this encoding
            pass
    return False


class Storm:
    """The seeded generator: `case(i)` makes request ``i``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        r = self.rng
        self.kinds = [
            (self.random_bytes, 10), (self.prefixed_garbage, 6), (self.bad_utf8, 6),
            (self.wrong_top_level, 7), (self.json_oddities, 4), (self.bad_field, 22),
            (self.surrogates, 3), (self.missing_question, 4), (self.unknown_fields, 5),
            (self.too_large, 5), (self.at_the_limit, 0.3), (self.long_question, 0.5),
            (self.deep_nesting, 5), (self.unknown_camera, 6), (self.unknown_topic, 6),
            (self.bad_response_topic, 2), (self.not_a_request, 3), (self.valid, 2.5),
        ]
        self._choose = lambda: r.choices([k for k, _ in self.kinds],
                                         [w for _, w in self.kinds])[0]

    # -- addressing -----------------------------------------------------------------------------
    def case(self, i: int) -> Case:
        r = self.rng
        make = self._choose()
        made = make()
        topic, body = made if isinstance(made, tuple) else (ASK, made)
        kind = make.__name__
        correlation = b"%08d" % i + (r.randbytes(r.choice((0, 0, 0, 8, 300, 3000))))
        if kind == "not_a_request":
            sender = r.choice(("v5a", "v5b"))
            return Case(i, kind, topic, encode_body(body), body, sender, f"fuzz/{sender}",
                        correlation, None)
        if kind == "bad_response_topic":
            sender = r.choice(("v5a", "v5b"))
            response = r.choice((f"fuzz/{sender}/#", f"fuzz/+/{sender}", "#",
                                 f"fuzz/{sender}/" + "x" * 1100))
            return Case(i, kind, topic, encode_body(body), body, sender, response, correlation,
                        self.fallback(topic))
        mode = r.choices(("v5", "v5_bare", "v311"), (60, 10, 30 if body.v311 else 0))[0]
        if mode == "v311":
            reply = f"fuzz/v3/{i}"
            if body.value is not None and not body.own_reply_to:
                body.value = {**body.value, "reply_to": reply}
            payload = encode_body(body)
            if body.value is not None and not body.own_reply_to and body.readable:
                return Case(i, kind, topic, payload, body, "v3", expect_topic=reply)
            return Case(i, kind, topic, payload, body, "v3", expect_topic=self.fallback(topic),
                        matched=False)
        sender = r.choice(("v5a", "v5b"))
        if mode == "v5_bare":
            if len(body.codes) == 1 and r.random() < 0.25:  # no correlation data either
                return Case(i, kind, topic, encode_body(body), body, sender,
                            expect_topic=self.fallback(topic), matched=False)
            return Case(i, kind, topic, encode_body(body), body, sender, None, correlation,
                        self.fallback(topic))
        if body.value is not None and not body.own_reply_to and r.random() < 0.1:
            body.value = {**body.value, "reply_to": DECOY}  # the response topic wins
        return Case(i, kind, topic, encode_body(body), body, sender, f"fuzz/{sender}",
                    correlation, f"fuzz/{sender}")

    @staticmethod
    def fallback(topic: str) -> str:
        return ANSWERS if topic == ASK else ERRORS

    # -- pieces ---------------------------------------------------------------------------------
    def question(self) -> str:
        r = self.rng
        return " ".join(r.choice(WORDS) for _ in range(r.randint(1, 8))) + "?"

    def some_id(self, body: dict) -> Any:
        """Maybe an id in ``body``; what the reply will carry."""
        r = self.rng
        choice = r.random()
        if choice < 0.3:
            return None
        request_id = (r.randint(-2**63, 2**64 - 1) if choice < 0.5 else r.randint(0, 10**6)
                      if choice < 0.7 else f"q-{r.randrange(10**9)}-é")
        body["id"] = request_id
        return request_id

    def encoding(self) -> str:
        return self.rng.choice(("json", "msgpack"))

    def valid_body(self) -> tuple[dict, Any]:
        r = self.rng
        body: dict = {"question": self.question(), "max_new_tokens": r.choice((1, 2))}
        request_id = self.some_id(body)
        if r.random() < 0.3:
            body["temperature"] = r.choice((0.0, 0.5, 1.0, 2.0))
            body["seed"] = r.randrange(2**63)
        if r.random() < 0.2:
            body["top_p"] = r.choice((1.0, 0.9, 0.01))
        if r.random() < 0.3:
            body["wait"] = r.random() < 0.5
        for flag in ("cite", "retrieve"):
            if r.random() < 0.2:
                body[flag] = r.random() < 0.5
        return body, request_id

    # -- the kinds ------------------------------------------------------------------------------
    def valid(self) -> Body:
        body, request_id = self.valid_body()
        return Body(frozenset({"answer"}), body, self.encoding(), request_id=request_id,
                    question=body["question"])

    def at_the_limit(self) -> Body:
        """Exactly ``max_payload`` bytes (JSON padded with spaces) is asked; one more is not."""
        body, request_id = self.valid_body()
        if self.rng.random() < 0.5:
            return Body(frozenset({"answer"}), body, request_id=request_id,
                        question=body["question"], pad_to=MAX_PAYLOAD)
        return Body(frozenset({"too_large"}), body, request_id=None, pad_to=MAX_PAYLOAD + 1,
                    readable=False)

    def random_bytes(self) -> Body:
        r = self.rng
        while True:
            payload = r.randbytes(r.choice((0, 1, 2, r.randrange(300))))
            if not decodes_to_map(payload):
                return Body(frozenset({"bad_payload"}), raw=payload, request_id=None,
                            readable=False)

    def prefixed_garbage(self) -> Body:
        """Bytes after what looks like a JSON object or a msgpack map."""
        r = self.rng
        while True:
            head = r.choice((b"{", b"  {", b"\x81", b"\x8f", b"\xde\x00\x03", b"\xdf\x00\x00\x00\x02",
                             b'{"question": ', b"\x81\xa8question"))
            payload = head + r.randbytes(r.randrange(64))
            if not decodes_to_map(payload):
                return Body(frozenset({"bad_payload"}), raw=payload, request_id=None,
                            readable=False)

    def bad_utf8(self) -> Body:
        r = self.rng
        bad = r.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82",
                        b"\xf4\x90\x80\x80", b"\x80", b"ok\xfe"))
        if r.random() < 0.5:
            where = r.choice(("value", "key"))
            payload = (b'{"question": "' + bad + b'"}' if where == "value" else
                       b'{"' + bad + b'": "What?"}')
        else:
            text = bytes([0xA0 | len(bad)]) + bad  # a msgpack str holding the bad bytes
            payload = (b"\x81\xa8question" + text if r.random() < 0.5 else
                       b"\x81" + text + b"\xa5What?")
        return Body(frozenset({"bad_payload"}), raw=payload, request_id=None, readable=False)

    def wrong_top_level(self) -> Body:
        r = self.rng
        value = r.choice(([], [{"question": "What?"}], "What?", 3, -1.5, None, True,
                          ["question", "What?"], b"bytes", 2**40))
        if r.random() < 0.5 and not isinstance(value, bytes):
            payload = json.dumps(value).encode()
        else:
            payload = msgpack.packb(value, use_bin_type=True)
        return Body(frozenset({"bad_payload"}), raw=payload, request_id=None, readable=False)

    def json_oddities(self) -> Body:
        """JSON that is not JSON: NaN / Infinity, trailing bytes, a BOM, truncation, an
        integer past Python's digit limit."""
        r = self.rng
        body, _ = self.valid_body()
        text = json.dumps(body).encode()
        payload = r.choice((
            text[:-1] + b', "temperature": NaN}', text[:-1] + b', "top_p": -Infinity}',
            text + b" trailing", b"\xef\xbb\xbf" + text, text[: r.randrange(1, len(text))],
            text[:-1] + b', "seed": ' + b"9" * 5000 + b"}", text + text,
        ))
        return Body(frozenset({"bad_payload"}), raw=payload, request_id=None, readable=False)

    BAD_FIELDS: dict[str, tuple] = {
        "question": (7, 1.5, [], ["What?"], None, {}, True, "", "   ", "\n\t", {"text": "x"}),
        "max_new_tokens": (-1, 0, 1.5, 2.0, True, False, 10**9, 4097, "2", None, [], {},
                           -2**63),
        "temperature": ("NaN", "nan", "Infinity", "-inf", "0.5", -0.5, -1e-9, True, None, [],
                        float("nan"), float("inf"), float("-inf")),
        "top_p": (0, 0.0, 1.5, -1, "1", None, True, float("nan"), 1e-400),
        "seed": (-1, -2**63, 2**63, 2**64 - 1, 1.0, "7", True, [], {}),
        "wait": ("true", "false", 1, 0, "yes", None, [], 1.0),
        "cite": ("false", 0, 1, None, [], {}),
        "retrieve": ("true", 0, None, 1.0),
        "id": ({}, {"a": 1}, [], [1], 1.5, True, False, "x" * 257, 2**64, -2**63 - 1),
        "reply_to": ("", "a/#", "#", "a/+/b", "+", "x" * 1025, 5, [], "a\x00b", True),
    }

    def bad_field(self) -> Body:
        """A valid request but for one field of the wrong type or out of range."""
        r = self.rng
        body, request_id = self.valid_body()
        name = r.choice(list(self.BAD_FIELDS))
        value = r.choice(self.BAD_FIELDS[name])
        body[name] = value
        if name == "id":
            request_id = None
        encodings = [e for e in ("json", "msgpack") if _encodable(value, e)]
        return Body(frozenset({"bad_request"}), body, r.choice(encodings),
                    request_id=request_id, own_reply_to=name == "reply_to")

    def surrogates(self) -> Body:
        """A lone surrogate ("\\ud800" in JSON) in the question, reply_to or id."""
        r = self.rng
        body, request_id = self.valid_body()
        where = r.choice(("question", "reply_to", "id"))
        if where == "id":  # a string id may hold one: it is echoed, escaped
            body["id"] = request_id = "id-\ud800"
            return Body(frozenset({"answer"}), body, request_id=request_id,
                        question=body["question"])
        body[where] = f"{body.get(where, 'fuzz/x')}\udc80"
        return Body(frozenset({"bad_request"}), body, request_id=request_id,
                    own_reply_to=where == "reply_to")

    def missing_question(self) -> Body:
        body, request_id = self.valid_body()
        del body["question"]
        return Body(frozenset({"bad_request"}), body, self.encoding(), request_id=request_id)

    def unknown_fields(self) -> Body:
        r = self.rng
        body, request_id = self.valid_body()
        name = r.choice(("prompt", "Question", "questions", "", "max_tokens", "x" * 300,
                         "camera", "ID", b"question"))
        if isinstance(name, bytes):  # a msgpack bin key: a field no request has
            body[name] = "What?"
            return Body(frozenset({"bad_request"}), body, "msgpack", request_id=request_id)
        if r.random() < 0.15:  # a msgpack integer key: strict_map_key refuses the map
            return Body(frozenset({"bad_payload"}), body, "msgpack", extra=(7, b"\xc0"),
                        request_id=None, readable=False)
        body[name] = r.choice((1, "x", None, [1, 2], {"a": {"b": 1}}))
        return Body(frozenset({"bad_request"}), body, self.encoding(), request_id=request_id)

    def too_large(self) -> Body:
        r = self.rng
        size = r.choice((MAX_PAYLOAD + 1, MAX_PAYLOAD + 2, r.randrange(MAX_PAYLOAD, 3 *
                                                                     MAX_PAYLOAD)))
        body, _ = self.valid_body()
        what = r.choice(("question", "id", "reply_to", "unknown", "bin", "bytes", "nesting"))
        codes = frozenset({"too_large"})
        if what == "bytes":
            return Body(codes, raw=r.randbytes(size), request_id=None, readable=False)
        if what == "nesting":
            depth = size // 2
            return Body(codes, body, extra=("question", b"[" * depth + b"]" * depth),
                        request_id=None, readable=False)
        if what == "bin":
            body["question"] = r.randbytes(size)
            return Body(codes, body, "msgpack", request_id=None, readable=False)
        body[{"unknown": "padding"}.get(what, what)] = "x" * size
        return Body(codes, body, self.encoding(), request_id=None, readable=False,
                    own_reply_to=what == "reply_to")

    def long_question(self) -> Body:
        """Within ``max_payload`` but past the memory's max_question_tokens: the runtime
        refuses it."""
        body, request_id = self.valid_body()
        body["question"] = " ".join(self.rng.choice("abcdefghij") for _ in range(6000))
        return Body(frozenset({"bad_request"}), body, self.encoding(), request_id=request_id)

    def deep_nesting(self) -> Body:
        r = self.rng
        body, request_id = self.valid_body()
        depth = r.choice((2, 10, 100, 500, 900, 990, 999, 1000, 1023, 1024, 1025, 2000, 5000,
                          10_000))
        name = r.choice(("question", "max_new_tokens", "temperature", "top_p", "seed", "wait",
                         "id", "deep"))
        body.pop(name, None)
        encoding = self.encoding()
        lists = depth > 4000 or r.random() < 0.5  # (10,000 maps would be too large)
        if encoding == "json":
            nest = b"[" * depth + b"]" * depth if lists else \
                b'{"a": ' * depth + b"1" + b"}" * depth
        else:
            nest = b"\x91" * depth + b"\xc0" if lists else b"\x81\xa1a" * depth + b"\x01"
        codes = (frozenset({"bad_request"}) if depth < 500 else
                 frozenset({"bad_payload"}) if depth > 1100 else AMBIGUOUS)
        if codes == {"bad_payload"} or name == "id":
            request_id = None
        elif codes == AMBIGUOUS:
            request_id = NO_ID  # (None if the decoder gave up)
        return Body(codes, body, encoding, extra=(name, nest), request_id=request_id,
                    v311=False)

    def unknown_camera(self) -> tuple[str, Body]:
        r = self.rng
        camera = r.choice(("garage", "Door", "door2", "dör", "door ", "..", "", "x" * 100,
                           "déjà-vu", "*"))
        body = self.valid() if r.random() < 0.6 else self.rng.choice(
            (self.random_bytes, self.bad_field, self.too_large, self.missing_question))()
        body.codes = frozenset({"unknown_camera"})
        if body.raw is None and body.readable and body.value is not None:
            body.request_id = body.value.get("id") if _is_id(body.value.get("id")) else None
        else:
            body.request_id = None
        body.question = None
        return f"site/{camera}/ask", body

    def unknown_topic(self) -> tuple[str, Body]:
        r = self.rng
        topic = r.choice(("site/door/ask/extra", "site/door/asks", "site/door", "site",
                          "site/door/ask/", "site/door/Ask", "site/a/b/c", "site/door/",
                          "site/ask", "site/door/question", "site//", "site/door/ask/ask",
                          "site/door/answer/x", "site/available/x"))
        _, body = self.unknown_camera()
        body.codes = frozenset({"unknown_topic"})
        return topic, body

    def bad_response_topic(self) -> Body:
        """A response topic that cannot be published to (mosquitto passes wildcards on)."""
        body, request_id = self.valid_body()
        return Body(frozenset({"bad_request"}), body, self.encoding(), request_id=request_id)

    def not_a_request(self) -> tuple[str, Body]:
        """What bridges publish, and topics outside the prefix: no reply, not counted."""
        r = self.rng
        topic = r.choice(("site/door/answer", "site/door/event", "site/door/alert",
                          "site/door/status", "site/available", "site/error", "other/door/ask",
                          "sitex/door/ask", "Site/door/ask"))
        body, _ = self.valid_body()
        return topic, Body(frozenset(), raw=b"ignored:" + json.dumps(body).encode())


def _encodable(value: Any, encoding: str) -> bool:
    try:
        if encoding == "json":
            json.dumps(value, allow_nan=False)
        else:
            msgpack.packb(value)
    except (ValueError, OverflowError, TypeError):
        return False
    return True


def _is_id(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**64) or (
        isinstance(v, str) and len(v) <= 256)
