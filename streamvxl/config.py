"""`MemoryConfig`: how a `VideoMemory` cuts, compresses, bounds and answers."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError
from .intervals.boundary import BoundaryConfig
from .intervals.ratio import RatioPolicy, as_ratio_policy
from .memory.store import EvictionPolicy
from .model.layout import RemainderRule, split_windows, window_layout
from .prompt import PromptTemplate


@dataclass(frozen=True)
class MemoryConfig:
    """Settings of one video memory. Every field has a working default.

    Example:
        >>> from streamvxl import MemoryConfig, DensityRatio
        >>> cfg = MemoryConfig(ratio=DensityRatio((4, 8, 16)), token_budget=4096)
    """

    ratio: int | RatioPolicy | None = 8
    """Compression ratio (one VST per r raw tokens), a policy choosing it per interval
    (`DensityRatio`), or None to keep every raw token's K/V (the uncompressed baseline)."""
    window: int | None = None
    """Most raw tokens per interval-encoder forward; None takes the checkpoint's
    ``beacon_window`` (Video-XL: 1440 = 10 frames of 144 tokens)."""
    boundary: BoundaryConfig = field(default_factory=BoundaryConfig)
    """Online interval cutting: depth-score threshold, window, min/max frames per interval."""
    token_budget: int | None = None
    """Hard cap on retained tokens (sink + VSTs); None is unbounded. The K/V storage is
    allocated once at the budget (plus two windows of encoder scratch), so it stays flat."""
    eviction: EvictionPolicy = "drop_oldest"
    """What makes room when a new interval does not fit the budget."""
    remainder: RemainderRule = "summarize"
    """VSTs when r does not divide a window: 'summarize' (an extra VST covers the tail; no raw
    token is lost) or 'drop' (the reference's rule: the tail is not summarised)."""
    max_question_tokens: int = 512
    """Longest question accepted, in tokens."""
    vision_batch_size: int = 16
    """Frames per vision-tower forward when frames come in bulk (`VideoMemory.extend`)."""
    prompt: PromptTemplate = field(default_factory=PromptTemplate)
    """Chat template around the video."""

    def __post_init__(self) -> None:
        if self.ratio is not None:
            object.__setattr__(self, "ratio", as_ratio_policy(self.ratio))
        for name, optional in (("window", True), ("token_budget", True),
                               ("max_question_tokens", False), ("vision_batch_size", False)):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"MemoryConfig.{name} must be a positive int"
                                  f"{' or None' if optional else ''}, got {value!r}")
        if self.eviction != "drop_oldest":
            raise ConfigError(f"MemoryConfig.eviction {self.eviction!r} is not available; use "
                              "'drop_oldest'")
        if self.remainder not in ("summarize", "drop"):
            raise ConfigError(f"MemoryConfig.remainder must be 'summarize' or 'drop', got "
                              f"{self.remainder!r}")

    @property
    def ratio_policy(self) -> RatioPolicy | None:
        return self.ratio  # normalised in __post_init__

    def max_interval_tokens(self, tokens_per_frame: int, window: int) -> int:
        """Most tokens one interval can retain (longest interval at the smallest ratio)."""
        raw = self.boundary.max_frames * tokens_per_frame
        if self.ratio is None:
            return raw
        r = min(self.ratio.ratios)
        return sum(window_layout(e - s, r, self.remainder).num_vst
                   for s, e in split_windows(raw, window))
