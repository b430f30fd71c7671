"""Intervals: online boundaries, [min_frames, max_frames] segmentation, compression ratios.

Frames stream in with one embedding each; ``IntervalSegmenter`` closes intervals online (a
``BoundaryDetector`` decides cuts ``delay_frames`` late), and a ``RatioPolicy`` picks each closed
interval's compression ratio from its internal similarities.
"""

from streamvxl.intervals.boundary import BoundaryConfig, BoundaryDetector, Embedding
from streamvxl.intervals.ratio import (
    DensityRatio,
    FixedRatio,
    RatioPolicy,
    as_ratio_policy,
    information_density,
)
from streamvxl.intervals.segmenter import ClosedInterval, IntervalSegmenter, segment

__all__ = [
    "BoundaryConfig",
    "BoundaryDetector",
    "ClosedInterval",
    "DensityRatio",
    "Embedding",
    "FixedRatio",
    "IntervalSegmenter",
    "RatioPolicy",
    "as_ratio_policy",
    "information_density",
    "segment",
]
