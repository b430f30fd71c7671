"""A tiny built-in 5x7 bitmap font (digits and uppercase letters), so signs need no font files.

Letters: H, W = height and width of a rendered text block in pixels; s = integer scale.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

GLYPH_W, GLYPH_H = 5, 7
"""Size of one glyph in font pixels (before scaling)."""

_ROWS: dict[str, str] = {
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
}

CHARSET: frozenset[str] = frozenset(_ROWS)
"""Characters the font can draw."""


def glyph(char: str) -> np.ndarray:
    """The (7, 5) bool bitmap of one character.

    Example:
        >>> int(glyph("1").sum())
        10
    """
    if char not in _ROWS:
        raise ValueError(f"font has no glyph for {char!r}; use digits 0-9 and letters A-Z")
    rows = _ROWS[char].split()
    return np.array([[c == "1" for c in row] for row in rows], dtype=bool)  # (7, 5)


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """(height, width) in pixels of ``text`` drawn at ``scale``: glyphs 1 font pixel apart."""
    n = len(text)
    return GLYPH_H * scale, (n * (GLYPH_W + 1) - 1) * scale if n else 0


@lru_cache(maxsize=1024)
def text_mask(text: str, scale: int = 1) -> np.ndarray:
    """The (H, W) bool bitmap of ``text`` at an integer ``scale``; read-only (it is cached).

    Example:
        >>> text_mask("42", scale=2).shape
        (14, 22)
    """
    if scale < 1:
        raise ValueError(f"text scale must be >= 1, got {scale}")
    if not text:
        raise ValueError("text must not be empty")
    h, w = text_size(text, 1)
    mask = np.zeros((h, w), dtype=bool)  # (7, 6n - 1) at scale 1
    for i, char in enumerate(text):
        mask[:, i * (GLYPH_W + 1): i * (GLYPH_W + 1) + GLYPH_W] = glyph(char)
    mask = mask.repeat(scale, axis=0).repeat(scale, axis=1)  # (H, W)
    mask.setflags(write=False)
    return mask
