"""The text around the video: a chat template split at the video's place.

Compression is query-agnostic: the memory is ``[prefix | video]`` and every question is appended
after it, so one memory serves any number of questions. The prefix becomes the sink.

What the memory did not see is told in words: each gap in memory (a camera offline, a stall, no
frames) becomes one sentence (`PromptTemplate.gap`) just before the question, in the user's
turn after the video -- e.g. "Note: the camera saw nothing from 12.0 s to 35.5 s (the
connection was lost)." -- so "what happened at 20 s?" can be answered "the camera was offline".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .frames import Gap


@dataclass(frozen=True)
class PromptTemplate:
    """Text before the video (the sink) and the question's wrapping after it."""

    prefix: str = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                   "<|im_start|>user\n")
    """Everything before the video (ChatML, as Video-XL and SmolLM2-Instruct use)."""
    question: str = "\n{question}<|im_end|>\n<|im_start|>assistant\n"
    """Wrapping of a question; ``{question}`` is replaced by the user's text."""
    stop_strings: tuple[str, ...] = ("<|im_end|>",)
    """Tokens (as text) that end an answer besides the model's EOS."""
    gap: str = "Note: the camera saw nothing from {start:.1f} s to {end:.1f} s ({cause})."
    """One gap in memory, told before the question (fields ``start``, ``end``, ``cause``)."""

    def __post_init__(self) -> None:
        from .errors import ConfigError

        if "{question}" not in self.question:
            raise ConfigError("PromptTemplate.question must contain '{question}'")
        try:
            self.gap.format(start=0.0, end=1.0, cause="")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"PromptTemplate.gap may use only {{start}}, {{end}} and "
                              f"{{cause}}: {e!r}") from e

    def format_question(self, question: str, gaps: Sequence[Gap] = ()) -> str:
        """The question's wrapping, with a sentence per gap before it.

        Example:
            >>> PromptTemplate(question="{question}").format_question(
            ...     "Who left?", [Gap(12.0, 35.5, "the connection was lost")])
            'Note: the camera saw nothing from 12.0 s to 35.5 s (the connection was lost). Who left?'
        """
        notes = [self.gap.format(start=g.start, end=g.end, cause=g.cause) for g in gaps]
        return self.question.replace("{question}", " ".join([*notes, question]))
