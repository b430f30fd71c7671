"""A camera between the world and the model: light that drifts, blur, sensor noise, H.264.

The renderer draws perfect frames: flat colours, sharp edges, no noise, no codec. A real
camera's frames are none of those, and a model trained only on perfect frames reads colours and
edges that a camera does not deliver (issue 23: a simple H.264 clip drawn by another program
got "green" for a red square on green). `WorldConfig.camera` draws one `Camera` per episode;
`streamvxl.world.render` passes the episode's frames through it:

1. light: a gain drifting linearly from ``gain_start`` to ``gain_end`` over the episode
   (clouds, auto-exposure), applied to every channel;
2. blur: a box blur ``blur`` pixels long, along x (motion), y, or both (defocus);
3. noise: Gaussian sensor noise of standard deviation ``noise`` (0-255 scale), seeded per
   frame, so any frame renders the same alone or in a range;
4. H.264: a round trip through libx264 at constant quality ``crf`` (yuv420p, PyAV), when set.
   A codec's frames depend on the frames before them, so an episode with H.264 is always
   encoded whole and the range asked is cut from it.

Letters: F frames, H, W frame size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

_SEED_TAG = 0xCA3E


@dataclass(frozen=True)
class CameraConfig:
    """Ranges each episode's camera is drawn from (uniformly; `WorldConfig.camera`).

    Example:
        >>> CameraConfig(noise=(0.0, 6.0), h264_prob=0.0).blur
        (0, 2)
    """

    noise: tuple[float, float] = (0.0, 10.0)
    """Sensor noise standard deviation, 0-255 scale."""
    gain: tuple[float, float] = (0.6, 1.4)
    """Light gain; drawn twice per episode, for its first and its last frame."""
    blur: tuple[int, int] = (0, 2)
    """Box blur length in pixels (0: none); its direction is drawn. At 64 x 64 a sign's glyphs
    are 1-pixel strokes: a blur of 1 along both axes (defocus) already leaves a number
    unreadable, so a run that must keep reading signs trains with ``(0, 0)``."""
    h264_prob: float = 0.3
    """Chance that an episode goes through H.264."""
    crf: tuple[int, int] = (24, 40)
    """libx264 constant-quality range (higher: more loss)."""

    def __post_init__(self) -> None:
        lo, hi = self.noise
        if not 0.0 <= lo <= hi <= 64.0:
            raise ValueError(f"CameraConfig.noise must satisfy 0 <= lo <= hi <= 64, got "
                             f"{self.noise}")
        lo, hi = self.gain
        if not 0.0 < lo <= hi <= 4.0:
            raise ValueError(f"CameraConfig.gain must satisfy 0 < lo <= hi <= 4, got {self.gain}")
        lo, hi = self.blur
        if not 0 <= lo <= hi <= 8:
            raise ValueError(f"CameraConfig.blur must satisfy 0 <= lo <= hi <= 8, got "
                             f"{self.blur}")
        if not 0.0 <= self.h264_prob <= 1.0:
            raise ValueError(f"CameraConfig.h264_prob must lie in [0, 1], got {self.h264_prob}")
        lo, hi = self.crf
        if not 0 <= lo <= hi <= 51:
            raise ValueError(f"CameraConfig.crf must satisfy 0 <= lo <= hi <= 51, got {self.crf}")


@dataclass(frozen=True)
class Camera:
    """One episode's camera (the identity when built with no arguments)."""

    gain_start: float = 1.0
    gain_end: float = 1.0
    blur: int = 0
    blur_axis: str = "xy"
    """"x" (horizontal motion), "y", or "xy" (defocus)."""
    noise: float = 0.0
    crf: int | None = None
    """H.264 constant quality; None: no codec."""
    seed: int = 0
    """Seeds the noise (per frame, with the frame's index)."""

    def __post_init__(self) -> None:
        if self.blur_axis not in ("x", "y", "xy"):
            raise ValueError(f"Camera.blur_axis must be 'x', 'y' or 'xy', got {self.blur_axis!r}")


def sample_camera(rng: np.random.Generator, config: CameraConfig) -> Camera:
    """A camera drawn from ``config``'s ranges."""
    gain = rng.uniform(*config.gain, size=2)
    blur = int(rng.integers(config.blur[0], config.blur[1] + 1))
    axis = ("x", "y", "xy")[int(rng.integers(3))]
    noise = float(rng.uniform(*config.noise))
    crf = int(rng.integers(config.crf[0], config.crf[1] + 1)) \
        if rng.random() < config.h264_prob else None
    return Camera(float(gain[0]), float(gain[1]), blur, axis, noise, crf,
                  int(rng.integers(2**31)))


def _box_blur(frames: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Mean over ``length + 1`` neighbours along ``axis`` (edges repeated): (F, H, W, 3) f32."""
    pad = [(0, 0)] * 4
    pad[axis] = (length // 2, length - length // 2)
    padded = np.pad(frames, pad, mode="edge")
    cum = np.cumsum(padded, axis=axis, dtype=np.float32)
    zero = np.zeros_like(np.take(cum, [0], axis=axis))
    cum = np.concatenate([zero, cum], axis=axis)
    n = frames.shape[axis]
    hi = np.take(cum, np.arange(length + 1, length + 1 + n), axis=axis)
    lo = np.take(cum, np.arange(0, n), axis=axis)
    return (hi - lo) / (length + 1)


def h264_round_trip(frames: np.ndarray, crf: int, fps: int = 2) -> np.ndarray:
    """``frames`` (F, H, W, 3) uint8 encoded with libx264 (yuv420p, ``crf``) and decoded."""
    import av

    f, h, w, _ = frames.shape
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf),
                                                               "preset": "ultrafast"})
        # yuv420p needs even sides: pad by repeating the edge, cut after decoding
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        for frame in frames:
            even = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            out.mux(stream.encode(av.VideoFrame.from_ndarray(even, format="rgb24")))
        out.mux(stream.encode())
    buf.seek(0)
    with av.open(buf, "r") as src:
        decoded = [fr.to_ndarray(format="rgb24")[:h, :w] for fr in src.decode(video=0)]
    if len(decoded) != f:
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} frames for {f}")
    return np.stack(decoded)


def apply_camera(frames: np.ndarray, camera: Camera, start: int, num_frames: int
                 ) -> np.ndarray:
    """Frames ``[start, start + F)`` of an episode of ``num_frames`` seen through ``camera``:
    (F, H, W, 3) uint8 in, uint8 out. With a codec, ``frames`` must be the whole episode."""
    if camera.crf is not None and (start, len(frames)) != (0, num_frames):
        raise ValueError("an H.264 camera needs the whole episode's frames")
    t = np.arange(start, start + len(frames), dtype=np.float32)
    k = t / max(1, num_frames - 1)
    gain = camera.gain_start + k * (camera.gain_end - camera.gain_start)  # (F,)
    out = frames.astype(np.float32) * gain[:, None, None, None]
    if camera.blur:
        for axis in {"x": (2,), "y": (1,), "xy": (1, 2)}[camera.blur_axis]:
            out = _box_blur(out, camera.blur, axis)
    if camera.noise:
        for i, ti in enumerate(range(start, start + len(frames))):
            rng = np.random.default_rng([_SEED_TAG, camera.seed, ti])
            out[i] += rng.normal(0.0, camera.noise, out[i].shape).astype(np.float32)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if camera.crf is not None:
        out = h264_round_trip(out, camera.crf)
    return out


__all__ = ["Camera", "CameraConfig", "apply_camera", "h264_round_trip", "sample_camera"]
