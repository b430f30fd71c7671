"""Answers as they decode: text pieces whose concatenation is exactly the answer's text.

The runtime hands every token id to a callback on the thread that decodes; `AnswerStream` (a
plain iterator) and `AsyncAnswerStream` (an async iterator) carry them to the caller, where
`TextStream` turns them into text. A piece is released only when it cannot change: a byte-level
tokenizer may split one character over several tokens (held back while the text ends in U+FFFD),
and the answer's text is stripped (leading whitespace is dropped, trailing whitespace waits for
what follows it).
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from typing import Any

from ..answer import Answer
from .question import answer_text

log = logging.getLogger(__name__)

_END = object()


class TextStream:
    """Token ids in, stable text pieces out (see the module docstring).

    Example:
        >>> from streamvxl.testing import make_tokenizer
        >>> tok = make_tokenizer()
        >>> ids = tok(" The red car left.", add_special_tokens=False)["input_ids"]
        >>> text = TextStream(tok, stop_ids=())
        >>> pieces = [text.push(t) for t in ids] + [text.finish()]
        >>> "".join(pieces)
        'The red car left.'
    """

    def __init__(self, tokenizer: Any, stop_ids: tuple[int, ...]) -> None:
        self.tokenizer, self.stop_ids = tokenizer, stop_ids
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token: int) -> str:
        """Add one id; the text that became certain (maybe empty)."""
        self.ids.append(token)
        if token in self.stop_ids:
            return ""
        text = self.tokenizer.decode([t for t in self.ids if t not in self.stop_ids],
                                     skip_special_tokens=True).lstrip()
        if text.endswith("\ufffd"):  # a character split over tokens: wait for its rest
            return ""
        stable = text.rstrip()
        if not stable.startswith(self.emitted):  # decoding changed earlier text: wait
            return ""
        piece, self.emitted = stable[len(self.emitted):], stable
        return piece

    def finish(self) -> str:
        """The rest of the answer's text (`streamvxl.runtime.question.answer_text`)."""
        text = answer_text(self.tokenizer, self.ids, self.stop_ids)
        if not text.startswith(self.emitted):
            log.warning("streamed pieces %r are not a prefix of the answer %r: this tokenizer "
                        "decodes prefixes unstably", self.emitted, text)
            return ""
        piece, self.emitted = text[len(self.emitted):], text
        return piece


class AnswerStream(Iterator[str]):
    """Text pieces of an answer as it decodes; `answer` holds the whole `Answer` at the end.

    Example:
        >>> stream = mem.ask_stream("What happened?")   # doctest: +SKIP
        >>> for piece in stream:                         # doctest: +SKIP
        ...     print(piece, end="", flush=True)
        >>> stream.answer.intervals                      # doctest: +SKIP
    """

    def __init__(self, tokenizer: Any, stop_ids: tuple[int, ...]) -> None:
        self._text = TextStream(tokenizer, stop_ids)
        self._items: queue.Queue = queue.Queue()
        self.answer: Answer | None = None
        """The finished answer, once the iteration ended."""

    def on_token(self, token: int) -> None:
        """Called by the decoding thread for every id."""
        self._items.put(token)

    def attach(self, future: Future) -> None:
        """End the stream when ``future`` (the answer) is done."""
        future.add_done_callback(lambda f: self._items.put((_END, f)))

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> str:
        while True:
            item = self._items.get()
            if isinstance(item, int):
                piece = self._text.push(item)
                if piece:
                    return piece
                continue
            if item is _END:  # already finished
                raise StopIteration
            _, future = item
            self._items.put(_END)
            self.answer = future.result()  # raises the answer's error, if any
            piece = self._text.finish()
            if piece:
                return piece
            raise StopIteration


class AsyncAnswerStream(AsyncIterator[str]):
    """`AnswerStream` for asyncio: ``async for piece in mem.aask_stream(q)``."""

    def __init__(self, tokenizer: Any, stop_ids: tuple[int, ...],
                 loop: asyncio.AbstractEventLoop) -> None:
        self._text = TextStream(tokenizer, stop_ids)
        self._items: asyncio.Queue = asyncio.Queue()
        self._loop = loop
        self.answer: Answer | None = None

    def on_token(self, token: int) -> None:
        self._loop.call_soon_threadsafe(self._items.put_nowait, token)

    def attach(self, future: Future) -> None:
        future.add_done_callback(
            lambda f: self._loop.call_soon_threadsafe(self._items.put_nowait, (_END, f)))

    def __aiter__(self) -> AsyncAnswerStream:
        return self

    async def __anext__(self) -> str:
        while True:
            item = await self._items.get()
            if isinstance(item, int):
                piece = self._text.push(item)
                if piece:
                    return piece
                continue
            if item is _END:
                raise StopAsyncIteration
            _, future = item
            self._items.put_nowait(_END)
            self.answer = future.result()
            piece = self._text.finish()
            if piece:
                return piece
            raise StopAsyncIteration
