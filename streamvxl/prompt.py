"""The text around the video: a chat template split at the video's place.

Compression is query-agnostic: the memory is ``[prefix | video]`` and every question is appended
after it, so one memory serves any number of questions. The prefix becomes the sink.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def __post_init__(self) -> None:
        if "{question}" not in self.question:
            from .errors import ConfigError

            raise ConfigError("PromptTemplate.question must contain '{question}'")

    def format_question(self, question: str) -> str:
        return self.question.replace("{question}", question)
