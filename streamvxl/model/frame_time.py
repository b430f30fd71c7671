"""Frame time stamps: each frame's visual tokens preceded by its time, written as text.

A compressed memory re-packs its tokens at positions 0..M-1 (DESIGN.md §3), so without help it
holds time only as the order of its tokens, and a question such as "when did the red square
appear?" has nothing to read a second from (docs/results.md: both the compressed and the
uncompressed memory answered one constant second). A model whose `VisualConfig.frame_time` is
on sees, before each frame's visual tokens, the text of the frame's whole seconds since its
stream's first frame, zero-padded to a fixed width (``"000012s"``), embedded by the language
model's own embedding table. The stamp is part of the frame's raw tokens: the VSTs compress it
with the frame, so the memory costs no more tokens, and every frame has the same token count.

The ids are built character by character (one id per character, checked), so the width does not
depend on how a tokenizer would merge digits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import ConfigError

# Shapes: F frames, T visual tokens per frame, K stamp tokens, C hidden.

DIGITS = 6
"""Whole seconds a stamp writes: 999,999 s (11.5 days) before it wraps to 0."""
SUFFIX = "s"
STAMP_TOKENS = DIGITS + len(SUFFIX)
"""Tokens a stamp adds to each frame."""


def stamp_text(seconds: float) -> str:
    """The stamp of a frame ``seconds`` after its stream's first one: whole seconds, rounded
    half up (as the world's answers count them, `streamvxl.world.questions.seconds_of`),
    zero-padded; a stream older than ``10**DIGITS`` s wraps.

    Example:
        >>> stamp_text(12.4), stamp_text(0.5), stamp_text(4210.0)
        ('000012s', '000001s', '004210s')
    """
    if not seconds >= 0:  # also NaN
        raise ValueError(f"a frame's time since the stream's first frame must be >= 0, "
                         f"got {seconds!r}")
    whole = int(seconds + 0.5) % 10 ** DIGITS
    return f"{whole:0{DIGITS}d}{SUFFIX}"


class StampIds:
    """The token ids of stamps under one tokenizer (one id per character)."""

    def __init__(self, tokenizer: Any) -> None:
        chars = "0123456789" + SUFFIX
        ids: dict[str, int] = {}
        for ch in chars:
            got = tokenizer(ch, add_special_tokens=False)["input_ids"]
            if len(got) != 1:
                raise ConfigError(f"frame time stamps need one token per character; the "
                                  f"tokenizer writes {ch!r} as {got}")
            ids[ch] = int(got[0])
        self._ids = ids

    def __call__(self, seconds: Sequence[float]) -> torch.Tensor:
        """(F, K) int64 ids of the stamps of frames ``seconds`` after the stream's first."""
        rows = [[self._ids[ch] for ch in stamp_text(s)] for s in seconds]
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), STAMP_TOKENS)


def stamp_frames(embed: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor,
                 ids: torch.Tensor) -> torch.Tensor:
    """Visual tokens (F, T, C) with each frame's stamp (F, K ids) embedded before them by
    ``embed`` (ids (F, K) -> (F, K, C): `VideoXL.embed_ids`): (F, K + T, C), in the tokens'
    dtype and device."""
    if ids.shape != (tokens.shape[0], STAMP_TOKENS):
        raise ValueError(f"stamp ids {tuple(ids.shape)} do not match {tokens.shape[0]} frames "
                         f"of {STAMP_TOKENS} stamp tokens")
    stamps = embed(ids.to(tokens.device)).to(tokens.dtype)  # (F, K, C)
    return torch.cat((stamps, tokens), dim=1)


__all__ = ["DIGITS", "STAMP_TOKENS", "StampIds", "stamp_frames", "stamp_text"]
