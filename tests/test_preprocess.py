"""Frame preprocessing (`streamvxl.preprocess.Preprocessor`) against the processors it imitates.

- ``"crop"`` equals transformers' `CLIPImageProcessor` (PIL resize of the shortest edge, centre
  crop) up to resampling rounding, on square, wide and tall frames.
- ``"pad"`` equals LLaVA's ``expand2square`` (the frame pasted on a square of the mean colour)
  followed by that processor, up to resampling rounding.
- A square frame gives the same pixels either way; a mark at a wide frame's side is lost to
  "crop" and kept by "pad"; the padding is the mean colour (about 0 once normalised).
- A bad ``fit`` or size is refused naming the field.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor

from streamvxl.preprocess import CLIP_MEAN, Preprocessor

S = 64


def clip_processor() -> CLIPImageProcessor:
    return CLIPImageProcessor(size={"shortest_edge": S}, crop_size={"height": S, "width": S})


def frames(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 with smooth content (resamplers differ most on pixel noise)."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 100 * np.sin(x / 7 + c) * np.cos(y / 9 - c) for c in range(3)], -1)
    img[h // 4:h // 2, w // 5:w // 3] = g.integers(0, 256, 3)  # a flat box with hard edges
    return img.clip(0, 255).astype(np.uint8)


def expand2square(img: Image.Image, background: tuple[int, ...]) -> Image.Image:
    """LLaVA's padding (llava/mm_utils.py, with ``tuple(int(x * 255) for x in
    image_processor.image_mean)`` for a background), written out."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    out = Image.new(img.mode, (side, side), background)
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


@pytest.mark.parametrize("h, w", [(64, 64), (96, 96), (48, 48), (64, 112), (112, 64), (90, 160)])
def test_crop_is_the_clip_processor(h: int, w: int) -> None:
    frame = frames(h, w)
    ours = Preprocessor(S)([frame])[0]
    ref = torch.from_numpy(clip_processor()(Image.fromarray(frame),
                                            return_tensors="np")["pixel_values"][0])
    assert ours.shape == ref.shape == (3, S, S)
    # at most one uint8 level apart: 1 / (255 * std) ~ 0.015 in normalised units
    assert (ours - ref).abs().mean() < 0.005
    assert (ours - ref).abs().max() < 0.016


@pytest.mark.parametrize("h, w", [(64, 112), (112, 64), (90, 160), (40, 56)])
def test_pad_is_llava_expand2square(h: int, w: int) -> None:
    frame = frames(h, w, seed=1)
    ours = Preprocessor(S, fit="pad")([frame])[0]
    square = expand2square(Image.fromarray(frame), tuple(int(255 * m) for m in CLIP_MEAN))
    ref = torch.from_numpy(clip_processor()(square, return_tensors="np")["pixel_values"][0])
    assert ours.shape == ref.shape == (3, S, S)
    assert (ours - ref).abs().mean() < 0.005
    assert (ours - ref).abs().max() < 0.016


@pytest.mark.parametrize("h", [64, 100, 30])
def test_a_square_frame_is_the_same_either_way(h: int) -> None:
    frame = frames(h, h, seed=2)
    assert torch.equal(Preprocessor(S)([frame]), Preprocessor(S, fit="pad")([frame]))


def test_pad_keeps_the_sides_crop_loses_them() -> None:
    frame = np.full((64, 112, 3), 40, np.uint8)
    frame[20:40, 2:14] = 250  # near the left edge: outside the centre square
    crop, pad = Preprocessor(S)([frame])[0], Preprocessor(S, fit="pad")([frame])[0]
    assert crop.max() < 0  # only the dark background is left
    assert pad.max() > 1.5
    # the bars above and below (rows 0-13 and 50-63, the frame's border resampled with
    # them) hold the mean colour: ~0 once normalised
    bars = torch.cat((pad[:, :11], pad[:, 53:]), 1)
    assert bars.abs().max() < 0.02


@pytest.mark.parametrize("kwargs, field", [(dict(fit="squash"), "fit"),
                                           (dict(image_size=0), "image_size")])
def test_bad_settings_are_refused(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Preprocessor(**{"image_size": S, **kwargs})


def test_a_checkpoints_record_says_how_it_saw_its_frames() -> None:
    from streamvxl.errors import CheckpointError

    assert Preprocessor.recorded(S, {}, "x").fit == "crop"
    assert Preprocessor.recorded(S, {"fit": "pad"}, "x") == Preprocessor(S, fit="pad")
    for bad in ({"fit": "squash"}, {"fit": "pad", "mean": [0, 0, 0]}):
        with pytest.raises(CheckpointError, match="delta.safetensors: its preprocessing record"):
            Preprocessor.recorded(S, bad, "delta.safetensors")
