"""Answers as they decode: the pieces, joined, are exactly the answer's text."""

from __future__ import annotations

import asyncio

import pytest

from streamvxl.runtime.question import answer_text
from streamvxl.runtime.streaming import TextStream
from streamvxl.testing import make_tokenizer
from tests.runtime.helpers import QUESTION, memory, scenes

TEXTS = [
    " The red car left at 12 seconds.",
    "  leading and trailing spaces   ",
    "café — naïve 日本語 🚗 done",  # characters split over several byte-level tokens
    "\n\nline one\nline two\n",
    "",
]


@pytest.mark.parametrize("text", TEXTS)
def test_pieces_join_to_the_answer_text(text: str) -> None:
    tok = make_tokenizer()
    stop = (tok.eos_token_id,)
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    stream = TextStream(tok, stop)
    pieces = [stream.push(t) for t in ids]
    pieces.append(stream.finish())
    assert "".join(pieces) == answer_text(tok, ids, stop) == text.strip()
    assert "\ufffd" not in "".join(pieces)  # never half a character


def test_pieces_arrive_before_the_end() -> None:
    tok = make_tokenizer()
    ids = tok(" one two three four", add_special_tokens=False)["input_ids"]
    stream = TextStream(tok, ())
    early = [stream.push(t) for t in ids[:-1]]
    assert "".join(early).startswith("one two")


@pytest.mark.parametrize("background", [False, True], ids=["sync", "worker"])
def test_ask_stream_equals_ask(tiny_checkpoint, background: bool) -> None:
    mem = memory(tiny_checkpoint, background)
    mem.extend(scenes(2, 9))
    want = mem.ask(QUESTION, max_new_tokens=12, wait=True)
    stream = mem.ask_stream(QUESTION, max_new_tokens=12)
    pieces = list(stream)
    assert "".join(pieces) == want.text == stream.answer.text
    assert stream.answer.token_ids == want.token_ids

    async def in_a_loop():
        got = await mem.aask(QUESTION, max_new_tokens=12)
        astream = mem.aask_stream(QUESTION, max_new_tokens=12)
        return got, [p async for p in astream], astream.answer

    got, apieces, aanswer = asyncio.run(in_a_loop())
    assert got.token_ids == want.token_ids
    assert "".join(apieces) == want.text == aanswer.text
    mem.close()


def test_a_failed_stream_raises_its_error(tiny_checkpoint, monkeypatch) -> None:
    mem = memory(tiny_checkpoint)

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure while decoding")

    monkeypatch.setattr(mem.runtime, "start_answer", broken)
    with pytest.raises(RuntimeError, match="while decoding"):
        list(mem.ask_stream(QUESTION))
    mem.close()
