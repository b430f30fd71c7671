"""Frames (H x W x 3 uint8 RGB) -> the vision tower's pixel tensors, CLIP style.

Fit the frame into the tower's square (``fit``), scale to [0, 1] and normalise with the
tower's mean/std. Done in torch so it runs on the model's device; values are rounded to uint8
after resizing like the PIL-based CLIP processor.

- ``"crop"`` (CLIP's and Video-XL's): resize the shortest edge to the square's side (bicubic,
  antialiased) and centre-crop. A 16:9 camera loses 22 % of its width on each side: whatever
  happens there is never seen.
- ``"pad"`` (LLaVA's ``expand2square``): paste the frame on a square of the mean colour (about
  0 after normalisation), then resize that. Every pixel is seen, smaller. A square frame gives
  the same pixels either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CheckpointError

# Shapes: N frames, S image side, H/W frame height/width.

Fit = Literal["crop", "pad"]
"""How a frame that is not square fits the tower's square (`Preprocessor.fit`)."""

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocessor:
    """CLIP-style frame preprocessing for a tower of side ``image_size``."""

    image_size: int
    """Side of the square crop the tower takes."""
    mean: tuple[float, float, float] = CLIP_MEAN
    """Per-channel mean in [0, 1] units."""
    std: tuple[float, float, float] = CLIP_STD
    """Per-channel standard deviation in [0, 1] units."""
    fit: Fit = "crop"
    """How a frame that is not square fits the tower's square: centre-cropped ("crop", what
    CLIP and Video-XL were trained with) or padded with the mean colour ("pad": nothing at the
    frame's sides is lost)."""

    def __post_init__(self) -> None:
        if self.fit not in get_args(Fit):
            raise ValueError(f"Preprocessor.fit must be 'crop' or 'pad', got {self.fit!r}")
        if self.image_size < 1:
            raise ValueError(f"Preprocessor.image_size must be >= 1, got {self.image_size}")

    @classmethod
    def from_folder(cls, folder: Path, image_size: int) -> Preprocessor:
        """Read ``preprocessor_config.json`` (in ``folder`` or its vision-tower subfolder)."""
        for cand in (folder / "preprocessor_config.json",
                     *folder.glob("*/preprocessor_config.json")):
            if cand.is_file():
                try:
                    cfg = json.loads(cand.read_text())
                    mean = tuple(float(x) for x in cfg.get("image_mean", CLIP_MEAN))
                    std = tuple(float(x) for x in cfg.get("image_std", CLIP_STD))
                except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as e:
                    raise CheckpointError(f"{cand} is not a valid preprocessor config: {e}") from e
                if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
                    raise CheckpointError(f"{cand}: image_mean/image_std need 3 values each "
                                          "(std > 0)")
                return cls(image_size, mean, std)
        return cls(image_size)

    @classmethod
    def recorded(cls, image_size: int, record: Mapping[str, object], source: object
                 ) -> Preprocessor:
        """CLIP defaults at ``image_size`` fitting frames as a checkpoint's ``record`` says
        (``{"fit": "pad"}``; empty: a centre crop), the record read from ``source``.

        Raises:
            CheckpointError: the record holds something else, or a fit that does not exist.
        """
        unknown = sorted(set(record) - {"fit"})
        fit = record.get("fit", "crop")
        if unknown or fit not in get_args(Fit):
            raise CheckpointError(f"{source}: its preprocessing record {dict(record)!r} is not "
                                  f"{{'fit': one of {get_args(Fit)}}}")
        return cls(image_size, fit=fit)  # type: ignore[arg-type]

    def __call__(self, frames: list[np.ndarray], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Validated RGB uint8 frames -> (N, 3, S, S) normalised pixels."""
        out = torch.empty(len(frames), 3, self.image_size, self.image_size, device=device,
                          dtype=torch.float32)
        for i, frame in enumerate(self._upload(frames, torch.device(device))):
            out[i] = self._one(frame)
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return ((out / 255.0 - mean) / std).to(dtype)

    @staticmethod
    def _upload(frames: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
        """Frames on ``device``. To a GPU, same-sized frames go as one pinned, non-blocking
        copy: a copy from pageable memory makes the host wait until the GPU has drained its
        queue, leaving it idle while the host prepares the next batch."""
        if device.type != "cuda" or len({f.shape for f in frames}) != 1:
            return [torch.from_numpy(f).to(device) for f in frames]
        batch = torch.from_numpy(np.stack(frames)).pin_memory()  # (N, H, W, 3)
        return list(batch.to(device, non_blocking=True).unbind(0))

    def _one(self, frame: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, S, S) float in 0..255."""
        s = self.image_size
        img = frame.permute(2, 0, 1)[None].float()  # (1, 3, H, W)
        h, w = img.shape[-2:]
        if self.fit == "pad" and h != w:  # LLaVA's expand2square: a square of the mean
            # colour, rounded down as LLaVA does (122, 116, 104 for CLIP's: ~-0.01 normalised)
            side = max(h, w)
            square = torch.tensor([int(255 * m) for m in self.mean], dtype=img.dtype,
                                  device=img.device).view(1, 3, 1, 1).repeat(1, 1, side, side)
            top, left = (side - h) // 2, (side - w) // 2
            square[:, :, top:top + h, left:left + w] = img
            img, h, w = square, side, side  # (1, 3, side, side)
        # CLIPImageProcessor's resize: the shortest edge to S, the longest in proportion
        # (rounded down), then the centre S x S
        if h <= w:
            nh, nw = s, max(s, int(s * w / h))
        else:
            nh, nw = max(s, int(s * h / w)), s
        if (nh, nw) != (h, w):
            img = F.interpolate(img, size=(nh, nw), mode="bicubic", antialias=True,
                                align_corners=False).clamp_(0, 255).round_()
        top, left = (nh - s) // 2, (nw - s) // 2
        return img[0, :, top:top + s, left:left + s]
