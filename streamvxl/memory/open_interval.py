"""The frames of the still-open interval: raw visual tokens, embeddings and timestamps.

Frames stay raw until the segmenter closes the interval they belong to; a question asked
meanwhile sees them uncompressed. The boundary decision runs a few frames late, so a closed
interval is a prefix of this buffer: `take` removes and returns that prefix (the segmenter
closes intervals in frame order, so the buffer needs no frame indices of its own).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Shapes: F frames, T tokens per frame, C hidden, E embedding width.


@dataclass
class FrameSpan:
    """Consecutive frames taken out of the buffer."""

    tokens: torch.Tensor  # (F, T, C)
    embeddings: torch.Tensor  # (F, E)
    timestamps: list[float]
    looks: torch.Tensor | None = None  # (F, E') text-to-frame embeddings, when kept


class OpenInterval:
    """FIFO of per-frame tokens of consecutive frames."""

    def __init__(self) -> None:
        self._tokens: list[torch.Tensor] = []
        self._embeddings: list[torch.Tensor] = []
        self._looks: list[torch.Tensor | None] = []
        self.timestamps: list[float] = []

    def __len__(self) -> int:
        return len(self._tokens)

    def append(self, tokens: torch.Tensor, embedding: torch.Tensor, timestamp: float,
               look: torch.Tensor | None = None) -> None:
        """Add one frame: tokens (T, C), embedding (E,), and its text-to-frame embedding (E',)
        when the stream keeps them."""
        self._tokens.append(tokens)
        self._embeddings.append(embedding)
        self._looks.append(look)
        self.timestamps.append(timestamp)

    def looks(self) -> torch.Tensor | None:
        """(F, E') the buffered frames' text-to-frame embeddings; None when empty or not
        kept."""
        if not self._looks or any(x is None for x in self._looks):
            return None
        return torch.stack(self._looks)  # type: ignore[arg-type]

    def raw_tokens(self) -> torch.Tensor | None:
        """All buffered tokens (F*T, C), frame-major; None when empty."""
        if not self._tokens:
            return None
        return torch.cat(self._tokens, dim=0)

    def take(self, n: int) -> FrameSpan:
        """Remove and return the oldest ``n`` frames."""
        if not 0 < n <= len(self):
            raise IndexError(f"cannot take {n} frames from {len(self)} buffered")
        looks = self._looks[:n]
        span = FrameSpan(torch.stack(self._tokens[:n]), torch.stack(self._embeddings[:n]),
                         self.timestamps[:n],
                         None if any(x is None for x in looks) else torch.stack(looks))
        del self._tokens[:n], self._embeddings[:n], self._looks[:n], self.timestamps[:n]
        return span

    def clear(self) -> None:
        self._tokens.clear()
        self._embeddings.clear()
        self._looks.clear()
        self.timestamps.clear()
