"""A question, checked and tokenized before it is queued: bad input fails in the caller's thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError, QuestionError
from ..model.generate import Sampling
from ..prompt import PromptTemplate

MAX_NEW_TOKENS = 4096
"""Longest answer `ask` generates."""


@dataclass(frozen=True)
class Question:
    """What the runtime needs to answer one question."""

    text: str
    """The question as asked (stripped)."""
    ids: torch.Tensor
    """(Q,) int64 ids of the question wrapped in the prompt template."""
    max_new_tokens: int
    sampling: Sampling
    output_logits: bool
    cite: bool = True
    """Rank the spans the answer drew on (`Answer.cited`): one more pass over the context."""
    retrieve: bool = True
    """Let retrieval choose among every tier (`MemoryConfig.retrieval`); False: read the
    intervals on the GPU only."""


def prepare_question(tokenizer: Any, prompt: PromptTemplate, max_question_tokens: int,
                     question: object, max_new_tokens: int, temperature: float, top_p: float,
                     seed: int | None, output_logits: bool, cite: bool = True,
                     retrieve: bool = True) -> Question:
    """Validate and tokenize a question.

    Raises:
        QuestionError: the question is not text, empty, or longer than ``max_question_tokens``.
        ConfigError: ``max_new_tokens``, ``temperature``, ``top_p`` or ``seed`` is out of range.
    """
    if not isinstance(question, str):
        raise QuestionError(f"a question must be a str, got {type(question).__name__}")
    text = question.strip()
    if not text:
        raise QuestionError("the question is empty; ask something about the video")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not (
            1 <= max_new_tokens <= MAX_NEW_TOKENS):
        raise ConfigError(f"max_new_tokens must be an int in [1, {MAX_NEW_TOKENS}], got "
                          f"{max_new_tokens!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an int or None, got {seed!r}")
    sampling = Sampling(temperature, top_p, seed)
    q_len = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    if q_len > max_question_tokens:
        raise QuestionError(f"the question has {q_len} tokens, more than "
                            f"max_question_tokens={max_question_tokens}; shorten it or raise "
                            "MemoryConfig.max_question_tokens")
    ids = tokenizer(prompt.format_question(text), add_special_tokens=False)["input_ids"]
    return Question(text, torch.tensor(ids, dtype=torch.long), max_new_tokens, sampling,
                    bool(output_logits), bool(cite), bool(retrieve))


def stop_ids(eos_ids: tuple[int, ...], tokenizer: Any, prompt: PromptTemplate) -> tuple[int, ...]:
    """Tokens that end an answer: the model's EOS ids, the tokenizer's, and each of the
    prompt's stop strings that is a single token."""
    ids = set(eos_ids)
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(tokenizer.eos_token_id)
    for s in prompt.stop_strings:
        enc = tokenizer(s, add_special_tokens=False)["input_ids"]
        if len(enc) == 1:
            ids.add(enc[0])
    return tuple(sorted(ids))


def answer_text(tokenizer: Any, ids: list[int], stop: tuple[int, ...]) -> str:
    """The text of generated ``ids``: stop tokens and special tokens removed, stripped."""
    return tokenizer.decode([t for t in ids if t not in stop], skip_special_tokens=True).strip()
