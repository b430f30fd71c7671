"""Where the VSTs go inside a window, and how an interval is cut into windows.

Video-XL's "interleave" layout puts one VST *after* every r raw visual tokens. When r does not
divide the window's raw-token count L, two rules exist:

- ``"drop"`` (the reference): floor(L/r) VSTs; the trailing L mod r raw tokens are computed but no
  VST follows them, so their content is lost. Kept to reproduce the official outputs.
- ``"summarize"`` (streamvxl's streaming default): ceil(L/r) VSTs; the last VST follows the
  trailing partial group, so every raw token of a closed interval is seen by some VST. It also
  gives a window with fewer than r tokens one VST instead of none (the reference's trap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import torch

RemainderRule = Literal["summarize", "drop"]


@dataclass(frozen=True)
class WindowLayout:
    """One window: L raw tokens expanded with VSTs to L + n_vst slots."""

    num_raw: int
    ratio: int | None
    """None: no compression (no VSTs, every raw token's K/V is kept)."""
    raw_slots: torch.Tensor
    """(L,) int64: slot of raw token i in the expanded window."""
    vst_slots: torch.Tensor
    """(n_vst,) int64: slots of the VSTs, ascending."""
    _on: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_vst(self) -> int:
        return int(self.vst_slots.numel())

    @property
    def length(self) -> int:
        return self.num_raw + self.num_vst

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw_slots, vst_slots) on ``device``, copied once per device (no per-window upload,
        which would make the host wait for the GPU)."""
        key = str(device)
        cached = self._on.get(key)
        if cached is None:
            cached = (self.raw_slots.to(device), self.vst_slots.to(device))
            self._on[key] = cached
        return cached

    def is_vst(self) -> torch.Tensor:
        """(length,) bool mask of VST slots."""
        mask = torch.zeros(self.length, dtype=torch.bool)
        mask[self.vst_slots] = True
        return mask


@lru_cache(maxsize=256)
def window_layout(num_raw: int, ratio: int | None, remainder: RemainderRule = "summarize"
                  ) -> WindowLayout:
    """The expanded layout of a window of ``num_raw`` raw tokens at compression ``ratio``."""
    if num_raw < 1:
        raise ValueError(f"a window needs at least one raw token, got {num_raw}")
    i = torch.arange(num_raw)
    if ratio is None:
        return WindowLayout(num_raw, None, i, torch.zeros(0, dtype=torch.int64))
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1, got {ratio}")
    if remainder == "summarize":
        n_vst = -(-num_raw // ratio)
    elif remainder == "drop":
        n_vst = num_raw // ratio
    else:
        raise ValueError(f"unknown remainder rule {remainder!r}")
    # Raw token i is preceded by one VST per complete group before it (at most n_vst).
    raw_slots = i + torch.clamp(i // ratio, max=n_vst)
    j = torch.arange(n_vst)
    vst_slots = torch.clamp((j + 1) * ratio, max=num_raw) + j  # after its group of r raw tokens
    return WindowLayout(num_raw, ratio, raw_slots, vst_slots)


def split_windows(num_raw: int, window: int) -> list[tuple[int, int]]:
    """[start, end) raw-token ranges of consecutive windows of at most ``window`` tokens."""
    return [(s, min(s + window, num_raw)) for s in range(0, num_raw, window)]
