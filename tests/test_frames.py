"""to_rgb_uint8 gives one answer per picture whatever its type, and rejects the rest clearly."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from streamvxl.errors import FrameError
from streamvxl.frames import MAX_SIDE, Frame, frame_timestamp, to_rgb_uint8

H, W = 48, 64  # not square, so a transposed result cannot pass


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _strided(p: np.ndarray) -> np.ndarray:
    wide = np.zeros((H, 2 * W, 3), np.uint8)
    wide[:, ::2] = p
    return wide[:, ::2]  # same values, not C-contiguous


def _grad_chw(p: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(p).permute(2, 0, 1).float() / 255).requires_grad_()


SAME_PICTURE = {
    "numpy uint8": lambda p: p,
    "numpy uint8 strided view": _strided,
    "numpy float16": lambda p: (p / 255).astype(np.float16),
    "numpy float32": lambda p: (p / 255).astype(np.float32),
    "numpy float64": lambda p: p / 255,
    "torch uint8 HWC": lambda p: torch.from_numpy(p.copy()),
    "torch float HWC": lambda p: torch.from_numpy(p / 255).float(),
    "torch uint8 CHW": lambda p: torch.from_numpy(p.copy()).permute(2, 0, 1),
    "torch float CHW requiring grad": _grad_chw,
    "PIL RGB": lambda p: Image.fromarray(p),
    "PIL RGBA": lambda p: Image.fromarray(p).convert("RGBA"),
    "av.VideoFrame rgb24": lambda p: av.VideoFrame.from_ndarray(p, format="rgb24"),
    "Frame": lambda p: Frame(p.copy(), timestamp=0.0, index=0),
}


@pytest.mark.parametrize("make", SAME_PICTURE.values(), ids=SAME_PICTURE.keys())
def test_every_accepted_type_gives_the_same_array(picture: np.ndarray, make) -> None:
    out = to_rgb_uint8(make(picture))
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.shape == (H, W, 3)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, picture)


def test_float_scaling_rounds_to_nearest_not_down() -> None:
    values = np.array([0.0, 0.4, 0.6, 127.4, 127.6, 255.0]) / 255
    a = np.broadcast_to(values[:, None, None], (6, 2, 3))
    assert to_rgb_uint8(a)[:, 0, 0].tolist() == [0, 0, 1, 127, 128, 255]


def _rgb(shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    return np.zeros(shape, dtype)


def _float_with(value: float) -> np.ndarray:
    a = np.full((H, W, 3), 0.5, np.float32)
    a[3, 4, 1] = value
    return a


BAD_INPUTS = {
    "2-D grayscale": (lambda: _rgb((H, W)), "grayscale"),
    "batch of frames": (lambda: _rgb((2, H, W, 3)), "one frame at a time"),
    "RGBA array": (lambda: _rgb((H, W, 4)), "RGBA"),
    "one channel": (lambda: _rgb((H, W, 1)), "grayscale"),
    "numpy channel-first": (lambda: _rgb((3, H, W)), "transpose(1, 2, 0)"),
    "int16": (lambda: _rgb((H, W, 3), np.int16), "int16"),
    "torch int64": (lambda: torch.zeros(H, W, 3, dtype=torch.int64), "int64"),
    "bool": (lambda: _rgb((H, W, 3), np.bool_), "bool"),
    "complex": (lambda: _rgb((H, W, 3), np.complex64), "complex64"),
    "NaN": (lambda: _float_with(np.nan), "NaN"),
    "Inf": (lambda: _float_with(np.inf), "Inf"),
    "float above 1": (lambda: _float_with(200.0), "[0, 1]"),
    "float below 0": (lambda: _float_with(-0.1), "[0, 1]"),
    "too small": (lambda: _rgb((1, W, 3)), "resize"),
    "too large": (lambda: _rgb((MAX_SIDE + 1, 2, 3)), str(MAX_SIDE)),
    "list": (lambda: [[[0, 0, 0]] * W] * H, "list"),
    "string": (lambda: "frame.png", "str"),
    "None": (lambda: None, "NoneType"),
}


@pytest.mark.parametrize(("make", "fragment"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_rejected_with_a_useful_message(make, fragment: str) -> None:
    with pytest.raises(FrameError) as info:
        to_rgb_uint8(make())
    assert fragment in str(info.value)


def test_unknown_type_message_lists_accepted_types() -> None:
    with pytest.raises(FrameError) as info:
        to_rgb_uint8([1, 2, 3])
    for accepted in ("numpy array", "torch tensor", "PIL image", "av.VideoFrame", "Frame"):
        assert accepted in str(info.value)


def test_frame_error_is_a_value_error() -> None:
    # Callers that already catch ValueError keep working.
    with pytest.raises(ValueError):
        to_rgb_uint8(np.zeros((H, W), np.uint8))


def test_frame_timestamp() -> None:
    image = np.zeros((H, W, 3), np.uint8)
    assert frame_timestamp(Frame(image, timestamp=2.5, index=7)) == 2.5

    timed = av.VideoFrame.from_ndarray(image, format="rgb24")
    assert frame_timestamp(timed) is None  # no pts yet
    timed.pts, timed.time_base = 3, Fraction(1, 10)
    assert frame_timestamp(timed) == pytest.approx(0.3)

    assert frame_timestamp(image) is None
    assert frame_timestamp(torch.zeros(H, W, 3)) is None


FRAME_FIELDS_BAD = {
    "float image": (dict(image=np.zeros((H, W, 3), np.float32)), "to_rgb_uint8"),
    "strided image": (dict(image=_strided(np.zeros((H, W, 3), np.uint8))), "C-contiguous"),
    "negative index": (dict(index=-1), ">= 0"),
    "bool index": (dict(index=True), "int"),
    "NaN timestamp": (dict(timestamp=float("nan")), "finite"),
}


@pytest.mark.parametrize(("fields", "fragment"), FRAME_FIELDS_BAD.values(), ids=FRAME_FIELDS_BAD)
def test_frame_rejects_invalid_fields(fields: dict, fragment: str) -> None:
    kwargs = dict(image=np.zeros((H, W, 3), np.uint8), timestamp=0.0, index=0) | fields
    with pytest.raises(FrameError) as info:
        Frame(**kwargs)
    assert fragment in str(info.value)


def test_frame_is_immutable() -> None:
    frame = Frame(np.zeros((H, W, 3), np.uint8), timestamp=0.0, index=0)
    with pytest.raises(AttributeError):
        frame.index = 1  # type: ignore[misc]
