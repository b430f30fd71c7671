"""Answering: prefill a chunk over memory, then decode token by token.

Small free functions in the gpt-fast manner: `prefill`, `decode_one_token`, `sample`, `generate`.
The cache is a `RotatedCache` built once from memory, so each decode step costs one token's work
plus attention over the cache, with no re-rotation of memory keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

import torch

from ..errors import ConfigError
from .cache import RotatedCache
from .videoxl import VideoXL

# Shapes: B batch, T chunk tokens, C hidden, V vocabulary.

Result = TypeVar("Result")


@dataclass(frozen=True)
class Sampling:
    """How to pick the next token. ``temperature == 0`` is greedy."""

    temperature: float = 0.0
    """Softmax temperature; 0 picks the argmax."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0 disables it)."""
    seed: int | None = None
    """Seed of the sampling generator, for reproducible sampled answers."""

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


GREEDY = Sampling()


def _logits(model: VideoXL, hidden: torch.Tensor) -> torch.Tensor:
    """Logits in at least float32 (bf16 logits are too coarse to sample or compare)."""
    logits = model.logits(hidden)
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


@torch.no_grad()
def prefill(model: VideoXL, cache: RotatedCache, embeds: torch.Tensor,
            all_logits: bool = False) -> torch.Tensor:
    """Run (B, T, C) embeddings after the cache; logits of the last (B, V) or all (B, T, V)."""
    hidden, _ = model.model.forward_chunk(embeds, cache.length, cache)
    cache.advance(embeds.shape[1])
    return _logits(model, hidden if all_logits else hidden[:, -1])


@torch.no_grad()
def decode_one_token(model: VideoXL, cache: RotatedCache, token: torch.Tensor) -> torch.Tensor:
    """Feed one token id per batch row (B,) and return the next logits (B, V)."""
    hidden, _ = model.model.forward_chunk(model.embed_ids(token[:, None]), cache.length, cache)
    cache.advance(1)
    return _logits(model, hidden[:, -1])


GREEDY_BELOW = 1e-6
"""Temperatures below this sample as greedy: the distribution is one-hot to float precision
(and below float32's smallest normal, dividing by it is dividing by zero)."""


def sample(logits: torch.Tensor, sampling: Sampling,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row of logits (B, V) -> (B,)."""
    if sampling.temperature < GREEDY_BELOW:
        return logits.argmax(dim=-1)
    # the best logit is 0 before dividing: a small temperature sends the others to -inf (a
    # one-hot), never to inf - inf = NaN
    best = logits.max(dim=-1, keepdim=True).values
    probs = torch.softmax((logits - best) / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        drop = sorted_p.cumsum(-1) - sorted_p >= sampling.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@dataclass
class Generation:
    """Generated ids and, per step, the logits they were picked from."""

    ids: list[int]
    step_logits: list[torch.Tensor]
    """One (V,) float32 tensor per generated token (step 0 = the prefill's last position)."""
    stopped_on_eos: bool


def generate_steps(first_logits: torch.Tensor, step: Callable[[torch.Tensor], torch.Tensor],
                   max_new_tokens: int, eos_ids: tuple[int, ...] = (),
                   sampling: Sampling = GREEDY,
                   on_token: Callable[[int], None] | None = None, chunk: int = 8
                   ) -> Generator[None, None, Generation]:
    """`generate` in pieces: yields after the first token and then after every ``chunk``
    tokens, so a caller can do other work between them; returns the `Generation`."""
    generator = None
    if sampling.temperature > 0 and sampling.seed is not None:
        generator = torch.Generator(device=first_logits.device).manual_seed(sampling.seed)
    logits = first_logits
    ids: list[int] = []
    steps: list[torch.Tensor] = []
    for i in range(max_new_tokens):
        token = sample(logits, sampling, generator)  # (1,)
        tok = int(token.item())
        ids.append(tok)
        steps.append(logits[0])
        if on_token is not None:
            on_token(tok)
        if tok in eos_ids:
            return Generation(ids, steps, True)
        if i + 1 < max_new_tokens:
            if i % chunk == 0:
                yield
            logits = step(token)
    return Generation(ids, steps, False)


def generate(first_logits: torch.Tensor, step: Callable[[torch.Tensor], torch.Tensor],
             max_new_tokens: int, eos_ids: tuple[int, ...] = (),
             sampling: Sampling = GREEDY,
             on_token: Callable[[int], None] | None = None) -> Generation:
    """Decode up to ``max_new_tokens`` tokens (batch 1) from the prefill's last logits (1, V).

    ``step(token (1,)) -> logits (1, V)`` feeds one token: `decode_one_token` over a
    `RotatedCache`, or a CUDA-graph replay (`streamvxl.model.graphs.GraphDecoder.step`).
    """
    return run_steps(generate_steps(first_logits, step, max_new_tokens, eos_ids, sampling,
                                    on_token))


def run_steps(steps: Generator[None, None, Result]) -> Result:
    """Run a stepwise computation to its end and return its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
