"""Rendering: an `Episode` to uint8 RGB frames, vectorised with numpy, no GPU.

A frame is its scene's backdrop, then every visible object's sprite in flat colour, then every
visible sign. Sprites, backdrops and sign boards are computed once and cached (read-only), so a
render costs one broadcast copy per scene plus one scatter per object and one copy per sign.
Rendering is a pure function of the episode: the same episode gives the same bytes, and
rendering frames [a, b) gives exactly ``render(episode)[a:b]``.

Letters: F = frames, H, W = frame height and width, K = pixels of one sprite, S = sprite size.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from .camera import apply_camera
from .font import text_mask
from .scene import INK, RGB, Backdrop, Episode, Shape, Sign

_SUPERSAMPLE = 4


def _star(points: int = 5, inner: float = 0.5) -> np.ndarray:
    """Vertices (2 * points, 2) of a star pointing up, centred in [-1, 1]^2."""
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    verts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    verts[:, 1] += (1 - np.cos(np.pi / points)) / 2  # centre the vertical extent
    return verts


_POLYGONS: dict[str, np.ndarray] = {
    "triangle": np.array([[0.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]),
    "star": _star(),
}


def _in_polygon(x: np.ndarray, y: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Even-odd rule: which points (x, y) lie inside the polygon ``verts`` (V, 2)."""
    inside = np.zeros(x.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(verts, np.roll(verts, -1, axis=0), strict=True):
        if y1 == y2:
            continue  # a horizontal edge never crosses a horizontal ray
        crosses = (y1 > y) != (y2 > y)
        x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside


def _inside_unit(shape: Shape, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Which points of [-1, 1]^2 belong to ``shape``."""
    r2 = x * x + y * y
    if shape == "circle":
        return r2 <= 1.0
    if shape == "square":
        return np.ones(x.shape, dtype=bool)
    if shape == "ring":
        return (r2 <= 1.0) & (r2 >= 0.55 ** 2)
    if shape == "cross":
        return (np.abs(x) <= 0.3) | (np.abs(y) <= 0.3)
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= 1.0
    if shape in _POLYGONS:
        return _in_polygon(x, y, _POLYGONS[shape])
    raise ValueError(f"unknown shape {shape!r}")


@lru_cache(maxsize=512)
def shape_mask(shape: Shape, size: int) -> np.ndarray:
    """The (S, S) bool sprite of ``shape`` at ``size`` pixels: a pixel is in when at least half
    of it is covered (4x4 supersampling). Read-only; cached.

    Example:
        >>> int(shape_mask("square", 10).sum())
        100
    """
    n = size * _SUPERSAMPLE
    u = (np.arange(n) + 0.5) / n * 2 - 1  # subpixel centres in (-1, 1)
    y, x = np.meshgrid(u, u, indexing="ij")  # (S*4, S*4)
    inside = _inside_unit(shape, x, y)
    cover = inside.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))  # (S, S)
    mask = cover >= 0.5
    mask.setflags(write=False)
    return mask


@lru_cache(maxsize=512)
def _sprite_pixels(shape: Shape, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets (K,), (K,) int64 of the sprite's pixels."""
    ys, xs = np.nonzero(shape_mask(shape, size))
    ys, xs = ys.astype(np.int64), xs.astype(np.int64)
    ys.setflags(write=False)
    xs.setflags(write=False)
    return ys, xs


@lru_cache(maxsize=256)
def backdrop_image(backdrop: Backdrop, height: int, width: int) -> np.ndarray:
    """The (H, W, 3) uint8 background of a scene. Read-only; cached.

    Example:
        >>> bd = Backdrop("checker", ((70, 80, 95), (160, 150, 125)), period=8)
        >>> backdrop_image(bd, 16, 16)[0, :5, 0].tolist()
        [70, 70, 70, 70, 160]
    """
    yy, xx = np.mgrid[0:height, 0:width]  # (H, W) each
    half = max(1, backdrop.period // 2)
    p = backdrop.pattern
    if p == "solid":
        t = np.zeros((height, width))
    elif p == "stripes_h":
        t = (yy // half) % 2
    elif p == "stripes_v":
        t = (xx // half) % 2
    elif p == "stripes_d":
        t = ((xx + yy) // half) % 2
    elif p == "checker":
        t = (xx // half + yy // half) % 2
    elif p == "gradient_h":
        t = xx / max(width - 1, 1)
    elif p == "gradient_v":
        t = yy / max(height - 1, 1)
    elif p == "dots":
        period = backdrop.period
        dx = xx % period - (period - 1) / 2
        dy = yy % period - (period - 1) / 2
        t = (dx * dx + dy * dy <= (period / 4) ** 2).astype(np.float64)
    else:
        raise ValueError(f"unknown backdrop pattern {p!r}")
    a = np.array(backdrop.colours[0], dtype=np.float64)
    b = np.array(backdrop.colours[1], dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]  # (H, W, 1)
    img = np.rint(a * (1 - t) + b * t).astype(np.uint8)  # (H, W, 3)
    img.setflags(write=False)
    return img


@lru_cache(maxsize=1024)
def _board(text: str, scale: int, board: RGB) -> np.ndarray:
    mask = text_mask(text, scale)  # (h, w) text pixels
    h, w = mask.shape
    s = scale
    img = np.empty((h + 4 * s, w + 4 * s, 3), dtype=np.uint8)
    img[:] = INK  # border
    img[s:-s, s:-s] = board
    img[2 * s: 2 * s + h, 2 * s: 2 * s + w][mask] = INK
    img.setflags(write=False)
    return img


def sign_image(sign: Sign) -> np.ndarray:
    """The (h, w, 3) uint8 board of a sign: ink border, board colour, ink text. Read-only."""
    return _board(sign.text, sign.scale, sign.board)


def render(episode: Episode, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Frames ``[start, stop)`` of an episode as an (F, H, W, 3) uint8 array.

    Example:
        >>> from streamvxl.world.scene import WorldConfig, sample_episode
        >>> ep = sample_episode(np.random.default_rng(0), WorldConfig(num_frames=8))
        >>> render(ep).shape
        (8, 64, 64, 3)
    """
    stop = episode.num_frames if stop is None else stop
    if not 0 <= start <= stop <= episode.num_frames:
        raise ValueError(f"need 0 <= start <= stop <= {episode.num_frames}, got "
                         f"start={start}, stop={stop}")
    camera = episode.camera
    if camera is not None:  # drawn perfect, then through the episode's camera
        whole = camera.crf is not None  # a codec's frames depend on those before them
        a, b = (0, episode.num_frames) if whole else (start, stop)
        drawn = render(dataclasses.replace(episode, camera=None), a, b)
        seen = apply_camera(drawn, camera, a, episode.num_frames)
        return seen[start - a: stop - a] if whole else seen
    f, h, w = stop - start, episode.height, episode.width
    out = np.empty((f, h, w, 3), dtype=np.uint8)

    ends = [s.start for s in episode.scenes[1:]] + [episode.num_frames]
    for scene, end in zip(episode.scenes, ends, strict=True):
        a, b = max(scene.start, start), min(end, stop)
        if a < b:
            out[a - start: b - start] = backdrop_image(scene.backdrop, h, w)

    flat = out.reshape(-1, 3)  # (F*H*W, 3) view: one scatter per object
    for obj in episode.objects:
        a, b = max(obj.t_in, start), min(obj.t_out, stop)
        if a >= b:
            continue
        ts = np.arange(a, b)  # (F',)
        corners = obj.boxes(ts)  # (F', 2) top-left (x0, y0)
        ys, xs = _sprite_pixels(obj.shape, obj.size)  # (K,), (K,)
        px = corners[:, :1] + xs  # (F', K)
        py = corners[:, 1:] + ys  # (F', K)
        idx = ((ts - start)[:, None] * h + py) * w + px  # (F', K) flat pixel index
        inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        flat[idx[inside]] = np.asarray(obj.rgb, dtype=np.uint8)

    for sign in episode.signs:
        a, b = max(sign.t_in, start), min(sign.t_out, stop)
        if a < b:
            img = sign_image(sign)
            out[a - start: b - start, sign.y: sign.y + img.shape[0],
                sign.x: sign.x + img.shape[1]] = img
    return out


def camera_feed(episode: Episode) -> tuple[np.ndarray, np.ndarray]:
    """What the camera delivered: frames (F', H, W, 3) uint8 and their seconds (F',) float64 --
    every frame but an outage's (`Episode.offline`), whose timestamps then jump over it.

    Example:
        >>> from streamvxl.world.scene import WorldConfig, sample_episode
        >>> ep = sample_episode(np.random.default_rng(0), WorldConfig(num_frames=8))
        >>> [a.shape for a in camera_feed(ep)]
        [(8, 64, 64, 3), (8,)]
    """
    kept = episode.delivered()  # (F',)
    video = render(episode)
    if len(kept) < episode.num_frames:
        video = video[kept]
    return video, episode.timestamps()[kept]


def render_frame(episode: Episode, t: int) -> np.ndarray:
    """Frame ``t`` as an (H, W, 3) uint8 array; equal to ``render(episode)[t]``."""
    if not 0 <= t < episode.num_frames:
        raise ValueError(f"frame {t} is outside [0, {episode.num_frames})")
    return render(episode, t, t + 1)[0]


def object_map(episode: Episode, t: int) -> np.ndarray:
    """Which object drew each pixel of frame ``t``: an (H, W) int64 array of indices into
    ``episode.objects``, -1 where the backdrop or a sign shows. Drawn in `render`'s order
    (objects in turn, each over the ones before, then signs over all), so a pixel mapped to
    object k has object k's colour in the drawn frame -- exact labels of what each patch
    shows, for training a tower to see shape and colour apart.

    Example:
        >>> from streamvxl.world.scene import WorldConfig, sample_episode
        >>> ep = sample_episode(np.random.default_rng(0), WorldConfig(num_frames=8))
        >>> object_map(ep, 0).shape
        (64, 64)
    """
    if not 0 <= t < episode.num_frames:
        raise ValueError(f"frame {t} is outside [0, {episode.num_frames})")
    h, w = episode.height, episode.width
    owner = np.full((h, w), -1, dtype=np.int64)
    for k, obj in enumerate(episode.objects):
        if not obj.visible(t):
            continue
        x0, y0 = obj.boxes(np.array([t]))[0]
        ys, xs = _sprite_pixels(obj.shape, obj.size)  # (K,), (K,)
        py, px = y0 + ys, x0 + xs
        inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        owner[py[inside], px[inside]] = k
    for sign in episode.signs:
        if sign.visible(t):
            img = sign_image(sign)
            owner[sign.y: sign.y + img.shape[0], sign.x: sign.x + img.shape[1]] = -1
    return owner
