"""Frames: one picture with its time, and the conversion of any common image type into one.

Every frame that enters streamvxl is an H×W×3 ``uint8`` RGB numpy array. ``to_rgb_uint8`` turns
the types people actually hold (numpy arrays, torch tensors, PIL images, PyAV frames) into that,
and rejects anything ambiguous (grayscale, RGBA, 16-bit, floats outside [0, 1], NaN) with a
message that says how to convert it, rather than guessing and silently storing a wrong picture.

Shape letters: H = height, W = width, C = channels (always 3 = R, G, B once converted).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from streamvxl.errors import FrameError

if TYPE_CHECKING:
    import torch

MIN_SIDE = 2
"""Smallest accepted height or width in pixels (a 1-pixel side is almost surely a wrong shape)."""

MAX_SIDE = 8192
"""Largest accepted height or width in pixels (beyond 8K is almost surely a wrong shape)."""

_ACCEPTED = "a numpy array, torch tensor, PIL image, av.VideoFrame or streamvxl Frame"


@dataclass(frozen=True)
class Gap:
    """A stretch of the stream that the memory did not see: the camera was offline, stalled,
    or frames stopped coming. Times are the stream's seconds, like frame timestamps.

    Example:
        >>> Gap(12.0, 35.5, "the connection was lost").seconds
        23.5
    """

    start: float
    """Timestamp of the last frame before it."""
    end: float
    """Timestamp of the first frame after it."""
    cause: str
    """Why, in a few words ("the connection was lost", "no frames came")."""

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, eq=False)
class Frame:
    """One RGB picture and where it sits in its source.

    ``eq=False``: comparing frames compares identity, because ``==`` on the numpy image would
    give an array, not a bool.

    Example:
        >>> import numpy as np
        >>> f = Frame(np.zeros((48, 64, 3), np.uint8), timestamp=0.1, index=1)
        >>> f.image.shape, f.timestamp, f.index
        ((48, 64, 3), 0.1, 1)
    """

    image: np.ndarray
    """The picture: (H, W, 3) uint8 RGB, C-contiguous. Build it with ``to_rgb_uint8``."""

    timestamp: float
    """Presentation time in seconds, on the source's clock (a file's first frame is usually 0)."""

    index: int
    """0-based position of this frame among the frames its source delivered."""

    live: bool = False
    """True for a frame of a live source (camera, network stream, a file read in real time):
    a memory whose queue is full then drops its oldest frame rather than wait
    (`MemoryConfig.overflow`)."""

    gap: Gap | None = None
    """Set on the first frame after the source was offline: what the memory did not see."""

    def __post_init__(self) -> None:
        image = self.image
        if (
            not isinstance(image, np.ndarray)
            or image.dtype != np.uint8
            or image.ndim != 3
            or image.shape[2] != 3
            or not image.flags.c_contiguous
        ):
            described = (
                f"{type(image).__name__} {getattr(image, 'dtype', '')} "
                f"{tuple(getattr(image, 'shape', ()))}"
            )
            raise FrameError(
                f"Frame.image must be a C-contiguous (H, W, 3) uint8 numpy array, got "
                f"{described.strip()}; convert it with streamvxl.frames.to_rgb_uint8(...) first."
            )
        _check_size(image.shape[0], image.shape[1])
        # bool is an int subclass, but True as an index is a bug, not a position.
        if isinstance(self.index, bool) or not isinstance(self.index, (int, np.integer)):
            raise FrameError(f"Frame.index must be an int, got {type(self.index).__name__}.")
        if self.index < 0:
            raise FrameError(f"Frame.index must be >= 0, got {self.index}.")
        real = isinstance(self.timestamp, (int, float, np.integer, np.floating))
        if not real or not math.isfinite(self.timestamp):
            raise FrameError(
                f"Frame.timestamp must be a finite number of seconds, got {self.timestamp!r}."
            )


def to_rgb_uint8(frame: object) -> np.ndarray:
    """Convert a picture of any common type into an (H, W, 3) uint8 RGB C-contiguous array.

    Accepted inputs:

    * numpy arrays (H, W, 3), either ``uint8`` or float (16/32/64-bit) with values in [0, 1]
      (scaled by 255 and rounded);
    * torch tensors with the same dtypes, (H, W, 3) or channel-first (3, H, W); channel-first
      is assumed only when ``shape[0] == 3`` and ``shape[-1] != 3``. Moved to the CPU;
    * PIL images of any mode (converted to RGB, so an alpha channel is dropped);
    * ``av.VideoFrame`` (converted with ``to_ndarray(format="rgb24")``);
    * ``Frame`` (its image).

    The result may share memory with the input (a uint8 numpy array or CPU tensor is not
    copied); copy it if you will overwrite the input buffer afterwards.

    Args:
        frame: The picture.

    Returns:
        The (H, W, 3) uint8 RGB array.

    Raises:
        FrameError: The type, shape, dtype or values are not accepted; the message says how to
            convert the input.

    Example:
        >>> import numpy as np
        >>> to_rgb_uint8(np.ones((2, 2, 3), np.float32))[0, 0]
        array([255, 255, 255], dtype=uint8)
    """
    if isinstance(frame, Frame):
        return frame.image
    if isinstance(frame, np.ndarray):
        return _validate_array(frame, source="numpy array")

    # Only look for torch / PIL / av objects when their module is already imported: an object
    # of those types cannot exist otherwise, and importing torch just to check costs seconds.
    torch_module = sys.modules.get("torch")
    if torch_module is not None and isinstance(frame, torch_module.Tensor):
        return _from_torch(frame, torch_module)
    pil_image = sys.modules.get("PIL.Image")
    if pil_image is not None and isinstance(frame, pil_image.Image):
        rgb = frame if frame.mode == "RGB" else frame.convert("RGB")
        return _validate_array(np.asarray(rgb), source="PIL image")
    av = sys.modules.get("av")
    if av is not None and isinstance(frame, av.VideoFrame):
        return _validate_array(frame.to_ndarray(format="rgb24"), source="av.VideoFrame")

    kind = type(frame)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    raise FrameError(f"Cannot use a {name} as a frame; pass {_ACCEPTED}.")


def frame_timestamp(frame: object) -> float | None:
    """The presentation time (seconds) a frame carries, or None if it carries none.

    ``Frame`` gives its ``timestamp``; ``av.VideoFrame`` gives ``.time`` (None when it has no
    pts); every other type (arrays, tensors, images) carries no time.

    Example:
        >>> import numpy as np
        >>> frame_timestamp(Frame(np.zeros((2, 2, 3), np.uint8), 1.5, 0))
        1.5
        >>> frame_timestamp(np.zeros((2, 2, 3), np.uint8)) is None
        True
    """
    if isinstance(frame, Frame):
        return float(frame.timestamp)
    av = sys.modules.get("av")
    if av is not None and isinstance(frame, av.VideoFrame):
        t = frame.time
        return None if t is None else float(t)
    return None


def _check_size(height: int, width: int) -> None:
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        raise FrameError(
            f"Frame size {height}x{width} (HxW) is outside the accepted {MIN_SIDE}..{MAX_SIDE} "
            f"pixels per side; resize it first."
        )


def _from_torch(tensor: torch.Tensor, torch_module: ModuleType) -> np.ndarray:
    """Torch tensor -> validated numpy array: CPU, channel-last, numpy-representable dtype."""
    t = tensor.detach()
    # (3, H, W) -> (H, W, 3); a trailing 3 wins the tie, since (3, H, 3) is more likely H×W×C
    # with H == 3 than a 3-pixel-wide channel-first image.
    if t.ndim == 3 and t.shape[0] == 3 and t.shape[-1] != 3:
        t = t.permute(1, 2, 0)
    if t.dtype == torch_module.bfloat16:  # numpy has no bfloat16
        t = t.to(torch_module.float32)
    return _validate_array(t.cpu().numpy(), source="torch tensor")


def _validate_array(a: np.ndarray, *, source: str) -> np.ndarray:
    """Check shape, dtype and values; scale floats; return a C-contiguous uint8 (H, W, 3)."""
    shape = tuple(a.shape)
    if a.ndim == 2:
        raise FrameError(
            f"Got a 2-D {source} of shape {shape}, which looks like grayscale; frames must be "
            f"RGB (H, W, 3). Stack the channel: np.repeat(a[..., None], 3, axis=-1)."
        )
    if a.ndim != 3:
        hint = " Pass one frame at a time (e.g. batch[0])." if a.ndim == 4 else ""
        raise FrameError(
            f"Expected an (H, W, 3) RGB {source}, got {a.ndim} dimensions {shape}.{hint}"
        )
    channels = shape[2]
    if channels != 3:
        if channels == 4:
            hint = "it looks like RGBA; drop the alpha channel with a[..., :3]"
        elif channels == 1:
            hint = "it looks like grayscale; repeat it to 3 channels: np.repeat(a, 3, axis=-1)"
        elif shape[0] in (1, 3, 4):
            hint = "it looks channel-first (C, H, W); move channels last: a.transpose(1, 2, 0)"
        else:
            hint = "the last axis must hold the R, G, B channels"
        raise FrameError(
            f"Expected 3 channels in the last axis of the {source}, got shape {shape}: {hint}."
        )
    _check_size(shape[0], shape[1])

    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        raise FrameError(
            f"Got a bool {source}; frames must be uint8 (0-255) or float in [0, 1]. "
            f"Convert a mask with a.astype(np.uint8) * 255."
        )
    if np.issubdtype(a.dtype, np.integer):
        raise FrameError(
            f"Got a {a.dtype} {source}; only uint8 integers are accepted. If the values are "
            f"0-255 use a.astype(np.uint8); for 16-bit video scale first: (a >> 8).astype(np.uint8)."
        )
    if not np.issubdtype(a.dtype, np.floating):
        raise FrameError(f"Got a {a.dtype} {source}; frames must be uint8 or float in [0, 1].")

    # Scale in float32 at least: float16 cannot hold x*255 finely enough to round back exactly.
    f = a.astype(np.float32, copy=False) if a.dtype == np.float16 else a
    if not np.isfinite(f).all():
        raise FrameError(
            f"The float {source} contains NaN or Inf; fix the producer of the frame "
            f"(check for division by zero or uninitialised buffers)."
        )
    lo, hi = float(f.min()), float(f.max())
    if lo < 0.0 or hi > 1.0:
        raise FrameError(
            f"Float frames must hold values in [0, 1], got a {source} with range "
            f"[{lo:.4g}, {hi:.4g}]. If it holds 0-255 values, use a.astype(np.uint8); if it is "
            f"normalised (e.g. mean/std), undo the normalisation first."
        )
    # No clip needed: the range check above keeps rint(f * 255) inside [0, 255].
    return np.rint(f * 255.0).astype(np.uint8)


__all__ = ["MAX_SIDE", "MIN_SIDE", "Frame", "frame_timestamp", "to_rgb_uint8"]
