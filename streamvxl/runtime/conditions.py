"""Watch conditions: a yes/no question checked on every interval as it is stored, firing when
its answer turns to yes.

A condition ("a person is at the door") is asked of each newly stored interval alone -- the
prompt prefix (sink), that interval's VSTs re-packed right after it, then the question -- by one
prefill, with no generation: its score is ``log p(yes) - log p(no)`` at the answer's first
token. Asking the interval alone, not the whole memory, makes the score about that stretch of
time (with the whole memory, "was a person at the door" stays yes for as long as the memory
holds the moment). Hysteresis keeps a score that wavers around the threshold from firing on
every interval: a condition turns on above ``threshold + hysteresis / 2`` and off again below
``threshold - hysteresis / 2``; each turn is one `WatchEvent`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..errors import ConfigError, QuestionError

log = logging.getLogger(__name__)

# Shapes: L layers, G kv heads, S sink tokens, n an interval's tokens, D head_dim, V vocabulary.

YES_WORDS = ("yes", "Yes", " yes", " Yes", "YES")
NO_WORDS = ("no", "No", " no", " No", "NO")


@dataclass(frozen=True)
class WatchEvent:
    """A condition turned on (its answer became yes) or off again."""

    condition: str
    state: Literal["on", "off"]
    score: float
    """``log p(yes) - log p(no)`` for the interval that turned it."""
    t_start: float
    """The interval's first frame time, seconds."""
    t_end: float
    interval: int
    """The interval's id."""


@dataclass
class Condition:
    """One watched yes/no question of a stream (plain data: part of its state)."""

    text: str
    ids: torch.Tensor
    """(Q,) the question, wrapped in the prompt template and tokenized."""
    threshold: float
    hysteresis: float
    callback: Callable[[WatchEvent], None] | None
    on: bool = False
    scores: list[tuple[int, float]] = field(default_factory=list)
    """(interval id, score) of the recent checks, newest last (at most `KEEP_SCORES`)."""

    def update(self, score: float) -> Literal["on", "off"] | None:
        """The turn this score makes, if any (the condition's state follows it)."""
        if not self.on and score > self.threshold + self.hysteresis / 2:
            self.on = True
            return "on"
        if self.on and score < self.threshold - self.hysteresis / 2:
            self.on = False
            return "off"
        return None


KEEP_SCORES = 256


def as_question(condition: str) -> str:
    """The question asked for ``condition``: a question is kept; a statement becomes one.

    Example:
        >>> as_question("a person is at the door")
        'Is this true: a person is at the door? Answer yes or no.'
    """
    text = condition.strip()
    if text.endswith("?"):
        return f"{text} Answer yes or no."
    return f"Is this true: {text.rstrip('.')}? Answer yes or no."


def check_thresholds(threshold: float, hysteresis: float) -> None:
    for name, value, least in (("threshold", threshold, -math.inf), ("hysteresis", hysteresis, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or value < least:
            raise ConfigError(f"watch {name} must be a finite number"
                              f"{' >= 0' if least == 0 else ''}, got {value!r}")


def answer_ids(tokenizer, words: tuple[str, ...]) -> list[int]:
    """The token ids an answer starting with one of ``words`` begins with: their single-token
    spellings (any real chat vocabulary has them), else the first token of each.

    Raises:
        QuestionError: none of them tokenizes to anything.
    """
    spelled = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    single = sorted({ids[0] for ids in spelled if len(ids) == 1})
    first = single or sorted({ids[0] for ids in spelled if ids})
    if not first:
        raise QuestionError(f"none of {words} tokenizes in this vocabulary; watch conditions "
                            "compare their logits")
    return first


def yes_no_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The first tokens of yes and of no (those both share are left out).

    Raises:
        QuestionError: nothing is left on one side (the two answers cannot be told apart).
    """
    yes, no = answer_ids(tokenizer, YES_WORDS), answer_ids(tokenizer, NO_WORDS)
    shared = set(yes) & set(no)  # e.g. a lone space token both spellings start with
    yes, no = [i for i in yes if i not in shared], [i for i in no if i not in shared]
    if not yes or not no:
        raise QuestionError("yes and no begin with the same tokens in this vocabulary; watch "
                            "conditions cannot tell them apart")
    return yes, no


def score(logits: torch.Tensor, yes: list[int], no: list[int]) -> float:
    """``log p(yes) - log p(no)`` from (V,) first-token logits, each side summed over its
    spellings."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return float(torch.logsumexp(logp[yes], 0) - torch.logsumexp(logp[no], 0))


__all__ = ["Condition", "WatchEvent", "as_question", "check_thresholds", "score", "yes_no_ids"]
