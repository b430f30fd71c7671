"""Rendering is pure, range-consistent, and pixel-exact about what is visible when."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from streamvxl.world.font import CHARSET, glyph, text_mask
from streamvxl.world.render import (
    backdrop_image,
    object_map,
    render,
    render_frame,
    shape_mask,
    sign_image,
)
from streamvxl.world.scene import (
    BACKDROP_COLOURS,
    COLOURS,
    INK,
    PATTERNS,
    SHAPES,
    Backdrop,
    Episode,
    Scene,
    Sign,
    WorldObject,
)
from tests.world.world_cases import episodes


def test_render_twice_gives_identical_bytes() -> None:
    for ep in episodes()[::10]:
        assert render(ep).tobytes() == render(ep).tobytes()


def test_sub_range_equals_slice_of_full_render() -> None:
    rng = np.random.default_rng(0)
    for ep in episodes()[::7]:
        full = render(ep)
        assert full.shape == (ep.num_frames, ep.height, ep.width, 3) and full.dtype == np.uint8
        for _ in range(3):
            a, b = sorted(int(v) for v in rng.integers(0, ep.num_frames + 1, size=2))
            np.testing.assert_array_equal(render(ep, a, b), full[a:b])
        t = int(rng.integers(ep.num_frames))
        np.testing.assert_array_equal(render_frame(ep, t), full[t])


def test_bad_ranges_are_rejected() -> None:
    ep = episodes()[0]
    with pytest.raises(ValueError, match="start"):
        render(ep, 3, 2)
    with pytest.raises(ValueError, match="outside"):
        render_frame(ep, ep.num_frames)


def _sprite_on_frames(ep: Episode, obj: WorldObject) -> tuple[np.ndarray, ...]:
    """(t, row, col) of the object's sprite pixels on every frame of its span that fall inside
    the frame, from its boxes and sprite alone."""
    ts = np.arange(obj.t_in, obj.t_out)
    corners = obj.boxes(ts)  # (F, 2)
    ys, xs = np.nonzero(shape_mask(obj.shape, obj.size))
    rows = corners[:, 1:] + ys  # (F, K)
    cols = corners[:, :1] + xs  # (F, K)
    tt = np.broadcast_to(ts[:, None], rows.shape)
    keep = (rows >= 0) & (rows < ep.height) & (cols >= 0) & (cols < ep.width)
    return tt[keep], rows[keep], cols[keep]


def _pack(rgb: np.ndarray) -> np.ndarray:
    """One int per pixel: (..., 3) -> (...)."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def test_objects_are_visible_exactly_on_their_span() -> None:
    """Every pixel of an object's colour (named or unnamed) belongs to a visible object of that
    colour, and every visible object shows on every frame of its span (all its in-frame sprite
    pixels)."""
    edge_in = edge_out = unnamed = 0
    for ep in episodes()[::2]:
        frames = render(ep)
        packed = _pack(frames)  # (F, H, W)
        for rgb in set(COLOURS.values()) | {o.rgb for o in ep.objects}:
            name = str(rgb)
            counts = (packed == _pack(np.array(rgb))).sum(axis=(1, 2))  # (F,)
            expected = np.zeros(ep.num_frames, dtype=np.int64)
            for obj in (o for o in ep.objects if o.rgb == rgb):
                unnamed += obj.unnamed is not None
                edge_in += obj.enter_by == "edge"
                edge_out += obj.leave_by == "edge"
                tt, rows, cols = _sprite_on_frames(ep, obj)
                assert np.all(frames[tt, rows, cols] == rgb)
                per_frame = np.bincount(tt, minlength=ep.num_frames)
                assert np.all(per_frame[obj.t_in:obj.t_out] > 0), f"{obj.name} not visible"
                expected += per_frame
            np.testing.assert_array_equal(counts, expected, err_msg=name)
    assert edge_in > 5 and edge_out > 5  # the edge entries and exits were exercised
    assert unnamed > 5


def test_the_object_map_says_which_object_drew_each_pixel() -> None:
    """Against the rendered frames: a pixel mapped to object k has k's colour (and k is on
    screen), and a pixel of no object (backdrop, sign) has no object colour -- so overlapping
    objects and signs over objects are mapped as drawn."""
    for ep in episodes()[::3]:
        object_rgbs = _pack(np.array(list(COLOURS.values()) + [o.rgb for o in ep.objects]))
        frames = _pack(render(ep))  # (F, H, W)
        for t in range(0, ep.num_frames, 3):
            owner = object_map(ep, t)  # (H, W)
            for k, obj in enumerate(ep.objects):
                drawn = owner == k
                assert np.all(frames[t][drawn] == _pack(np.array(obj.rgb)))
                assert obj.rgb == (COLOURS[obj.colour] if obj.unnamed is None else obj.unnamed)
                assert obj.visible(t) or not drawn.any()
            assert not np.isin(frames[t][owner == -1], object_rgbs).any()
    with pytest.raises(ValueError, match="outside"):
        object_map(episodes()[0], episodes()[0].num_frames)


def test_sign_pixels_differ_exactly_on_the_board_while_shown() -> None:
    shown = 0
    for ep in episodes():
        if not ep.signs:
            continue
        with_signs = render(ep)
        without = render(dataclasses.replace(ep, signs=()))
        changed = np.any(with_signs != without, axis=-1)  # (F, H, W)
        expected = np.zeros_like(changed)
        for g in ep.signs:
            h, w = g.shape_hw
            expected[g.t_in:g.t_out, g.y:g.y + h, g.x:g.x + w] = True
            board = with_signs[g.t_in, g.y:g.y + h, g.x:g.x + w]
            s = g.scale
            text = board[2 * s:-2 * s, 2 * s:-2 * s]
            mask = text_mask(g.text, s)
            assert np.all(text[mask] == INK) and np.all(text[~mask] == g.board)
            shown += 1
        np.testing.assert_array_equal(changed, expected)
    assert shown > 20


def test_different_texts_render_differently() -> None:
    base = dict(t_in=0, t_out=1, x=2, y=2)
    images = {t: sign_image(Sign(t, **base)).tobytes() for t in ("CAT", "DOG", "42", "420")}
    assert len(set(images.values())) == len(images)


def test_glyphs_and_sprites_are_distinct() -> None:
    glyphs = {c: glyph(c).tobytes() for c in CHARSET}
    assert len(set(glyphs.values())) == len(CHARSET) == 36
    for size in (8, 10, 12, 16, 24):
        masks = [shape_mask(s, size) for s in SHAPES]
        assert all(m.any() for m in masks)
        assert len({m.tobytes() for m in masks}) == len(SHAPES)
    assert len(SHAPES) >= 6 and len(COLOURS) >= 8


def test_colours_are_well_separated_and_never_in_backdrops() -> None:
    rgb = np.array(list(COLOURS.values()), dtype=np.int64)
    gaps = np.abs(rgb[:, None] - rgb[None]).sum(-1) + np.eye(len(rgb), dtype=np.int64) * 999
    assert gaps.min() >= 100
    for pattern in PATTERNS:
        for a, b in itertools.pairwise(BACKDROP_COLOURS):
            img = backdrop_image(Backdrop(pattern, (a, b), 8), 20, 30)
            for c in COLOURS.values():
                assert not np.any(np.all(img == np.array(c, np.uint8), axis=-1))


def test_a_hand_built_episode_renders_where_it_says() -> None:
    bg = Backdrop("solid", ((120, 120, 120), (120, 120, 120)))
    obj = WorldObject("square", "red", 4, 1, 3, 10.0, 6.0, vx=2.0)  # moves 2 px right per frame
    ep = Episode(4, 1.0, 16, 32, (Scene(0, bg),), (obj,))
    frames = render(ep)
    red = np.all(frames == COLOURS["red"], axis=-1)  # (F, H, W)
    assert red.sum(axis=(1, 2)).tolist() == [0, 16, 16, 0]
    assert np.argwhere(red[1]).min(0).tolist() == [4, 8]
    assert np.argwhere(red[2]).min(0).tolist() == [4, 10]
