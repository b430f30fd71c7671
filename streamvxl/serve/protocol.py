"""The MQTT bridge's messages: requests in, answers / errors / events / alerts / status out.

A request is a JSON object or a msgpack map (told apart by its first byte; the reply comes in
the same encoding)::

    {"question": "Did a truck arrive?",      # required, text
     "id": "q-17",                          # optional, echoed back (string or integer)
     "reply_to": "agents/7/answers",        # MQTT 3.1.1 clients: where the answer goes
     "max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": null,
     "wait": false,                         # true: answer after every frame pushed is in
     "cite": true,                          # false: no "cited" ranking (one pass less)
     "retrieve": true}                      # false: read only the GPU tier (no retrieval)

MQTT 5 clients set the response topic (and correlation data) on the message instead; a
response topic wins over ``reply_to`` (one that cannot be published to -- wildcards, more than
1024 characters -- is answered ``bad_request`` where a reply would go without it). An answer::

    {"id": "q-17", "camera": "door", "question": "...", "text": "...", "finished": true,
     "intervals": [{"t_start": 12.0, "t_end": 19.5, "num_frames": 8, "ratio": 8,
                    "compressed": true}, ...],
     "cited": [{"t_start": 12.0, "t_end": 19.5, "weight": 0.8, "interval": 3,
                "match": 0.31}, ...],             # match: null unless retrieval scores frames
     "candidates": 212,
     "gaps": [{"t_start": ..., "t_end": ..., "cause": "..."}],
     "context_tokens": 812,
     "timings": {"wait": ..., "prefill": ..., "decode": ..., "total": ..., "first_token": ...,
                 "retrieve": ..., "cite": ...}}   # seconds; retrieve is part of prefill,
                                                  # cite comes after total

An error (a request that cannot be answered, and why)::

    {"id": "q-17", "camera": "door", "error": {"code": "bad_request",
                                               "message": "max_new_tokens = -1: ..."}}

Error codes: ``bad_payload`` (not JSON / msgpack, or not an object), ``too_large``,
``bad_request`` (a field missing, of the wrong type or out of range), ``unknown_camera``,
``unknown_topic``, ``busy`` (too many questions waiting for that camera), ``timeout``,
``unavailable`` (the camera's memory is closed or failed), ``internal``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from ..answer import Answer
from ..frames import Gap
from ..runtime.conditions import WatchEvent
from ..runtime.events import IntervalEvent

Encoding = Literal["json", "msgpack"]

REQUEST_FIELDS = ("question", "id", "reply_to", "max_new_tokens", "temperature", "top_p",
                  "seed", "wait", "cite", "retrieve")
MAX_ID_CHARS = 256
MAX_TOPIC_CHARS = 1024
MAX_NEW_TOKENS = 4096


class RequestError(Exception):
    """A request that will not be answered: ``code`` (see the module docstring), a message
    naming what was wrong, and what is known of the request for the error's reply."""

    def __init__(self, code: str, message: str, *, encoding: Encoding = "json",
                 request_id: str | int | None = None, reply_to: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.encoding, self.request_id, self.reply_to = encoding, request_id, reply_to


@dataclass(frozen=True)
class AskRequest:
    question: str
    encoding: Encoding
    request_id: str | int | None = None
    reply_to: str | None = None
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    wait: bool = False
    cite: bool = True
    """Rank what the answer drew on (``cited``); false skips that pass."""
    retrieve: bool = True
    """Choose from every tier what the question reads (`Retrieval`); false reads the GPU's."""


def sniff(payload: bytes) -> Encoding | None:
    """The encoding a payload is in by its first byte: a JSON object starts with '{' (after
    whitespace), a msgpack map with 0x80-0x8f, 0xde or 0xdf. None: neither."""
    head = payload.lstrip(b" \t\r\n")[:1]
    if head == b"{":
        return "json"
    if head and (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)) and payload[:1] == head:
        return "msgpack"
    return None


def decode(payload: bytes, max_bytes: int) -> tuple[dict, Encoding]:
    """A request's payload as a mapping, and its encoding.

    Raises:
        RequestError: too large, neither JSON nor msgpack, undecodable, or not an object.
    """
    encoding = sniff(payload)
    if len(payload) > max_bytes:
        raise RequestError("too_large", f"the request is {len(payload)} bytes; the limit is "
                                        f"{max_bytes}", encoding=encoding or "json")
    if encoding is None:
        raise RequestError("bad_payload", "a request is a JSON object or a msgpack map, e.g. "
                                          '{"question": "What happened?"}')
    try:
        if encoding == "json":
            value = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
        else:
            value = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except RecursionError:
        raise RequestError("bad_payload", "the request nests too deeply",
                           encoding=encoding) from None
    except Exception as e:  # noqa: BLE001 - every decoder failure is the sender's bad payload
        what = "UTF-8 JSON" if encoding == "json" else "msgpack"
        raise RequestError("bad_payload", f"not valid {what}: {_short(e)}",
                           encoding=encoding) from None
    if not isinstance(value, dict):
        raise RequestError("bad_payload", f"a request is an object/map, got "
                                          f"{type(value).__name__}", encoding=encoding)
    return value, encoding


def parse_ask(payload: bytes, max_bytes: int) -> AskRequest:
    """A question request, checked field by field.

    Raises:
        RequestError: what is wrong with it (carrying its id and reply_to when those are
            readable, so the error can still be answered).
    """
    value, encoding = decode(payload, max_bytes)
    # reply_to is read first: a bad id's error still goes where the sender listens
    request_id, reply_to = request_address(value)
    if value.get("id") is not None and request_id is None:
        raise RequestError("bad_request", f"id must be a string (<= {MAX_ID_CHARS} chars) or "
                                          "an integer", encoding=encoding, reply_to=reply_to)
    if value.get("reply_to") is not None and reply_to is None:
        raise RequestError("bad_request", "reply_to must be a topic name (UTF-8, no wildcards, "
                                          f"<= {MAX_TOPIC_CHARS} chars)", encoding=encoding,
                           request_id=request_id)

    def bad(message: str) -> RequestError:
        return RequestError("bad_request", message, encoding=encoding, request_id=request_id,
                            reply_to=reply_to)

    unknown = sorted(str(k)[:40] for k in value if k not in REQUEST_FIELDS)
    if unknown:
        raise bad(f"unknown fields {unknown}; a request has {list(REQUEST_FIELDS)}")
    question = value.get("question")
    if not _is_text(question) or not question.strip():
        raise bad("question must be non-empty text, e.g. {\"question\": \"What happened?\"}")
    max_new_tokens = value.get("max_new_tokens", 64)
    if not _is_int(max_new_tokens) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise bad(f"max_new_tokens must be a whole number 1..{MAX_NEW_TOKENS}, got "
                  f"{_short(max_new_tokens)}")
    temperature = value.get("temperature", 0.0)
    if not _is_number(temperature) or temperature < 0:
        raise bad(f"temperature must be a number >= 0, got {_short(temperature)}")
    top_p = value.get("top_p", 1.0)
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise bad(f"top_p must be a number in (0, 1], got {_short(top_p)}")
    seed = value.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**63):
        raise bad(f"seed must be a whole number >= 0 or null, got {_short(seed)}")
    flags = {}
    for name in ("wait", "cite", "retrieve"):
        flags[name] = value.get(name, name != "wait")
        if not isinstance(flags[name], bool):
            raise bad(f"{name} must be true or false, got {_short(flags[name])}")
    return AskRequest(question, encoding, request_id, reply_to, max_new_tokens,
                      float(temperature), float(top_p), seed, **flags)


def request_address(value: dict) -> tuple[str | int | None, str | None]:
    """The ``id`` and ``reply_to`` of a decoded request, each None where missing or invalid
    (what an error reply can use of a request that is refused)."""
    request_id, reply_to = value.get("id"), value.get("reply_to")
    return (request_id if _is_id(request_id) else None,
            reply_to if is_topic_name(reply_to) else None)


def is_topic_name(v: object) -> bool:
    """A topic a reply can be published to: UTF-8 text of 1..`MAX_TOPIC_CHARS` characters,
    no wildcards, no NUL (the MQTT client raises on anything else)."""
    return (_is_text(v) and 0 < len(v) <= MAX_TOPIC_CHARS and not any(
        c in v for c in "+#\x00"))


# -- replies ------------------------------------------------------------------------------------
def encode(message: dict[str, Any], encoding: Encoding = "json") -> bytes:
    if encoding == "msgpack":
        return msgpack.packb(message, use_bin_type=True)
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")


def answer_message(camera: str, request: AskRequest, answer: Answer) -> dict[str, Any]:
    t = answer.timings
    return {
        "id": request.request_id, "camera": camera, "question": request.question,
        "text": answer.text, "finished": answer.finished,
        "intervals": [{"t_start": s.t_start, "t_end": s.t_end, "num_frames": s.num_frames,
                       "ratio": s.ratio, "compressed": s.compressed} for s in answer.intervals],
        "cited": [{"t_start": c.t_start, "t_end": c.t_end, "weight": c.weight,
                   "interval": c.interval, "match": c.match} for c in answer.cited],
        "gaps": [gap_message(g) for g in answer.gaps],
        "context_tokens": answer.context_tokens, "candidates": answer.candidates,
        "timings": {"wait": t.wait, "prefill": t.prefill, "decode": t.decode, "total": t.total,
                    "first_token": t.first_token, "retrieve": t.retrieve, "cite": t.cite},
    }


def error_message(code: str, message: str, request_id: str | int | None = None,
                  camera: str | None = None) -> dict[str, Any]:
    return {"id": request_id, "camera": camera, "error": {"code": code, "message": message}}


def gap_message(gap: Gap) -> dict[str, Any]:
    return {"t_start": gap.start, "t_end": gap.end, "cause": gap.cause}


def event_message(camera: str, event: IntervalEvent) -> dict[str, Any]:
    return {"camera": camera, "interval": event.interval, "t_start": event.t_start,
            "t_end": event.t_end, "num_frames": event.num_frames, "ratio": event.ratio,
            "num_tokens": event.num_tokens, "evicted": event.evicted,
            "offloaded": event.offloaded}


def alert_message(camera: str, event: WatchEvent) -> dict[str, Any]:
    return {"camera": camera, "condition": event.condition, "state": event.state,
            "score": event.score, "t_start": event.t_start, "t_end": event.t_end,
            "interval": event.interval}


# -- checks -------------------------------------------------------------------------------------
def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # a JSON integer beyond any float (1 followed by 400 zeros)
        return False


def _is_id(v: object) -> bool:
    return (_is_int(v) and -2**63 <= v < 2**64) or (isinstance(v, str) and len(v) <= MAX_ID_CHARS)


def _is_text(v: object) -> bool:
    """A str that UTF-8 can carry: JSON's "\\ud800" decodes to a lone surrogate, which the
    tokenizer and the MQTT client (topics) refuse with exceptions of their own."""
    if not isinstance(v, str):
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _short(v: object, n: int = 80) -> str:
    try:
        text = repr(v)
    except RecursionError:  # msgpack decodes ~1020 levels, more than repr can walk
        return f"a {type(v).__name__} nested too deeply"
    return text if len(text) <= n else text[:n] + "..."


__all__ = ["AskRequest", "Encoding", "RequestError", "alert_message", "answer_message",
           "decode", "encode", "error_message", "event_message", "is_topic_name", "parse_ask",
           "request_address", "sniff"]
