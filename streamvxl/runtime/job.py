"""`IntervalJob`: a closed interval on its way into memory, one window at a time.

Plain data, part of a stream's state: the interval's raw visual tokens, its windows, how many old
intervals it will evict (decided when its first window runs, from the memory of that moment),
and the VSTs its finished windows kept. The runtime encodes the next window (`Runtime.encode_next`)
and, after the last one, adds the whole interval to the store in one step (`Runtime.commit`).
Between two windows the store is untouched, so a question can be served there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..intervals.segmenter import ClosedInterval
from ..model.layout import WindowLayout

# Shapes: L layers, G kv heads, N raw tokens, n kept tokens, C hidden, D head_dim.


@dataclass
class IntervalJob:
    """One closed interval being compressed."""

    closed: ClosedInterval
    """Its frames (indices in the stream) and internal similarities."""
    tokens: torch.Tensor
    """(1, N, C) raw visual tokens, on the model's device."""
    t_start: float
    """Its first frame's time, seconds."""
    t_end: float
    """Its last frame's time, seconds."""
    ratio: int | None
    """Compression ratio (None: keep every raw token's K/V)."""
    plan: list[tuple[int, int, WindowLayout]]
    """Windows as (start, end, layout) over the raw tokens."""
    embedding: torch.Tensor | None = None
    """(E,) mean frame embedding, CPU float32."""
    evict: int | None = None
    """Oldest intervals this one evicts; None until its first window runs."""
    looks: torch.Tensor | None = None
    """(k, E) image embeddings of a few of its frames (`IntervalRecord.looks`)."""
    kept_k: list[torch.Tensor] = field(default_factory=list)
    """Pre-RoPE keys (L, 1, G, n, D) each finished window kept."""
    kept_v: list[torch.Tensor] = field(default_factory=list)

    @property
    def windows_done(self) -> int:
        return len(self.kept_k)

    @property
    def done(self) -> bool:
        return self.windows_done == len(self.plan)

    @property
    def retained_tokens(self) -> int:
        """Tokens the interval will keep: its VSTs, or every raw token without compression."""
        return sum(lay.num_raw if lay.ratio is None else lay.num_vst for _, _, lay in self.plan)

    @property
    def num_frames(self) -> int:
        return self.closed.num_frames

    def retained(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The finished interval's pre-RoPE keys and values (L, 1, G, n, D)."""
        if len(self.kept_k) == 1:
            return self.kept_k[0], self.kept_v[0]
        return torch.cat(self.kept_k, dim=3), torch.cat(self.kept_v, dim=3)
