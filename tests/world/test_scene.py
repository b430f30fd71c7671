"""The sampler: held-out combinations, determinism, clean layouts, and validated settings."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from streamvxl.world.questions import make_questions, on_screen_window, seconds_of, seconds_text
from streamvxl.world.render import render
from streamvxl.world.scene import (
    COLOURS,
    HELD_OUT_COMBOS,
    SHAPES,
    UNNAMED_DISTANCE,
    Backdrop,
    Episode,
    Scene,
    Sign,
    WorldConfig,
    WorldObject,
    is_unnamed_colour,
    sample_episode,
    sample_still,
    unnamed_colour,
)
from tests.world.world_cases import CONFIGS, episodes
from training.samples import multi_image_sample, single_image_sample


def _boxes_overlap(a: WorldObject, b: WorldObject) -> bool:
    lo, hi = max(a.t_in, b.t_in), min(a.t_out, b.t_out)
    if lo >= hi:
        return False
    ts = np.arange(lo, hi)
    pa, pb = a.boxes(ts), b.boxes(ts)
    sep = ((pa[:, 0] + a.size <= pb[:, 0]) | (pb[:, 0] + b.size <= pa[:, 0])
           | (pa[:, 1] + a.size <= pb[:, 1]) | (pb[:, 1] + b.size <= pa[:, 1]))
    return bool(np.any(~sep))


def test_train_never_draws_held_out_combinations() -> None:
    combos = {o.combo for ep in episodes("train") for o in ep.objects}
    assert combos.isdisjoint(HELD_OUT_COMBOS)
    assert len(combos) > 30
    rng = np.random.default_rng(1)
    for _ in range(100):
        for ep in (sample_still(rng), *multi_image_sample(rng).episodes,
                   *single_image_sample(rng).episodes):
            assert {o.combo for o in ep.objects}.isdisjoint(HELD_OUT_COMBOS)


def test_eval_draws_every_held_out_combination() -> None:
    combos = {o.combo for ep in episodes("eval") for o in ep.objects}
    assert combos >= HELD_OUT_COMBOS
    assert len(combos - HELD_OUT_COMBOS) > 20  # seen pairs are still drawn


def test_sampling_is_deterministic_given_the_seed() -> None:
    cfg = CONFIGS["busy"]
    a = sample_episode(np.random.default_rng(7), cfg, "eval")
    b = sample_episode(np.random.default_rng(7), cfg, "eval")
    assert a == b
    assert a != sample_episode(np.random.default_rng(8), cfg, "eval")


def test_layout_is_clean() -> None:
    """Entries spaced, names unique, nothing overlaps, scenes long enough, cuts visible."""
    for ep in episodes("train") + episodes("eval"):
        entries = sorted(o.t_in for o in ep.objects)
        assert all(b - a >= 2 for a, b in itertools.pairwise(entries))
        assert len({o.combo for o in ep.objects}) == len(ep.objects)
        for a, b in itertools.combinations(ep.objects, 2):
            assert not _boxes_overlap(a, b), (a, b)
        for o in ep.objects:
            c = o.centres(np.arange(o.t_in, o.t_out))
            assert np.all((c >= -1e-6) & (c <= np.array([ep.width, ep.height]) + 1e-6))
        starts = [s.start for s in ep.scenes] + [ep.num_frames]
        assert all(b - a >= 4 for a, b in itertools.pairwise(starts))
        for s1, s2 in itertools.pairwise(ep.scenes):
            assert s1.backdrop.pattern != s2.backdrop.pattern
        spans = sorted((g.t_in, g.t_out) for g in ep.signs)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_scene_cut_changes_the_background() -> None:
    for ep in episodes("train"):
        if not ep.cuts:
            continue
        frames = render(Episode(ep.num_frames, ep.fps, ep.height, ep.width, ep.scenes))
        for t in ep.cuts:
            assert np.any(frames[t - 1] != frames[t])
            np.testing.assert_array_equal(frames[t], frames[t + 1])


def test_stills_are_one_frame_with_static_objects() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        ep = sample_still(rng, num_objects=3, sign=True)
        assert ep.num_frames == 1 and len(ep.signs) <= 1
        assert all(o.t_in == 0 and o.t_out == 1 for o in ep.objects)
    ep = sample_still(rng, num_objects=2, exclude=[("circle", "red")])
    assert ("circle", "red") not in {o.combo for o in ep.objects}


@pytest.mark.parametrize("kwargs, field", [
    (dict(num_frames=0), "num_frames"),
    (dict(fps=0), "fps"),
    (dict(min_objects=3, max_objects=2), "min_objects"),
    (dict(object_size=(0.3, 0.2)), "object_size"),
    (dict(edge_prob=1.5), "edge_prob"),
    (dict(stay_prob=-0.1), "stay_prob"),
    (dict(sign_frames=(4, 2)), "sign_frames"),
    (dict(height=8), "height"),
    (dict(sign_scale=4), "sign"),
    (dict(offline_prob=1.2), "offline_prob"),
    (dict(unnamed_prob=-0.5), "unnamed_prob"),
    (dict(offline_prob=0.5, offline_frames=(3, 8)), "offline_frames"),  # 2 s at 2 fps: no gap
    (dict(offline_prob=0.5, fps=8.0, offline_frames=(12, 20)), "offline_frames"),
    (dict(sizes=()), "sizes"),
    (dict(sizes=((64, 64), (12, 64))), "sizes: 12x64"),
    (dict(sizes=((64, 64), (24, 24))), "sizes: 24x24.*object_size"),  # 3.8 px objects
    (dict(sizes=((64, 64), 64)), "sizes"),
    (dict(sizes=((64, 64.5),)), "sizes must be whole pixel counts"),
    (dict(rates=()), "rates"),
    (dict(rates=("fast",)), "rates must be frames per second"),
    (dict(rates=(2.0, 0.0)), "rates: 0 fps.*fps must be > 0"),
    # 5 frames dropped at 3 fps leave 2 s between two frames: no gap the memory finds
    (dict(offline_prob=0.5, offline_frames=(5, 8), rates=(1.0, 2.0, 3.0)),
     "rates: 3 fps.*offline_frames"),
])
def test_bad_config_is_rejected_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        WorldConfig(**kwargs)


def test_bad_episode_is_rejected() -> None:
    bg = Backdrop("solid", ((120, 120, 120), (120, 120, 120)))
    with pytest.raises(ValueError, match="t_in < t_out"):
        Episode(4, 1.0, 16, 16, (Scene(0, bg),), (WorldObject("star", "red", 5, 3, 3, 8, 8),))
    with pytest.raises(ValueError, match="inside"):
        Episode(4, 1.0, 16, 16, (Scene(0, bg),), signs=(Sign("FISH", 0, 1, 0, 0),))
    with pytest.raises(ValueError, match="start at frame 0"):
        Episode(4, 1.0, 16, 16, (Scene(1, bg),))
    with pytest.raises(ValueError, match="split"):
        sample_episode(np.random.default_rng(0), split="test")  # type: ignore[arg-type]
    for rgb in (COLOURS["red"], (200, 40, 40), (120, 120, 120), (10, 300, 10)):
        with pytest.raises(ValueError, match="unnamed colour"):  # named, near red, muted, bad
            Episode(4, 1.0, 16, 16, (Scene(0, bg),),
                    (WorldObject("star", "red", 5, 0, 3, 8, 8, unnamed=rgb),))


def test_unnamed_colours_are_vivid_and_far_from_every_named_colour() -> None:
    rng = np.random.default_rng(0)
    palette = np.array(list(COLOURS.values()), dtype=np.float64)  # (8, 3)
    drawn = np.array([unnamed_colour(rng) for _ in range(500)], dtype=np.float64)  # (500, 3)
    assert (np.ptp(drawn, axis=1) >= 60).all()
    assert (np.linalg.norm(drawn[:, None] - palette, axis=-1).min(1) >= UNNAMED_DISTANCE).all()
    assert len({tuple(c) for c in drawn}) > 450  # many colours, not a few
    assert not any(is_unnamed_colour(c) for c in COLOURS.values())


def test_unnamed_prob_draws_objects_in_unnamed_colours_and_zero_changes_no_draw() -> None:
    base = WorldConfig(num_frames=24, max_objects=3)
    for i in range(20):  # 0: the episodes the recorded evaluations drew
        assert sample_episode(np.random.default_rng([6, i]), base) == sample_episode(
            np.random.default_rng([6, i]), replace(base, unnamed_prob=0.0))
        assert sample_still(np.random.default_rng([6, i]), base) == sample_still(
            np.random.default_rng([6, i]), replace(base, unnamed_prob=0.0))
    cfg = replace(base, unnamed_prob=0.4)
    objs = [o for i in range(200) for o in sample_episode(np.random.default_rng([7, i]), cfg,
                                                          "eval").objects]
    objs += [o for i in range(200) for o in sample_still(np.random.default_rng([7, i]),
                                                         cfg).objects]
    unnamed = [o for o in objs if o.unnamed is not None]
    assert 0.3 < len(unnamed) / len(objs) < 0.5
    assert all(is_unnamed_colour(o.unnamed) and o.name == o.shape for o in unnamed)
    assert {o.shape for o in unnamed} == set(SHAPES)
    eps = (sample_episode(np.random.default_rng([8, i]), cfg) for i in range(50))
    ep = next(e for e in eps if any(o.unnamed for o in e.objects))
    frames = render(ep)  # (F, H, W, 3): an unnamed object's pixels are its colour, no name's
    o = next(o for o in ep.objects if o.unnamed is not None)
    shown = np.all(frames[o.t_in] == np.array(o.unnamed, np.uint8), axis=-1)
    assert shown.any()
    assert not np.isin(frames[o.t_in][shown].astype(np.int64) @ [65536, 256, 1],
                       np.array(list(COLOURS.values())) @ [65536, 256, 1]).any()


def test_sizes_draw_a_frame_size_per_episode_and_none_changes_no_draw() -> None:
    sizes = ((48, 48), (64, 112), (96, 72))
    cfg = WorldConfig(num_frames=16, max_objects=3, sizes=[list(s) for s in sizes])  # from JSON
    assert cfg.sizes == sizes
    drawn = [sample_episode(np.random.default_rng([6, i]), cfg) for i in range(60)]
    assert {(ep.height, ep.width) for ep in drawn} == set(sizes)
    for ep in drawn:  # objects scale with the drawn size, as a config of that size draws them
        at = replace(cfg, height=ep.height, width=ep.width, sizes=None)
        lo, hi = at.size_range
        assert all(lo <= o.size <= hi for o in ep.objects)
        assert render(ep).shape == (16, ep.height, ep.width, 3)
    base = WorldConfig(num_frames=16, max_objects=3)
    for i in range(10):  # None: the episodes recorded before sizes existed
        assert sample_episode(np.random.default_rng([7, i]), base) == sample_episode(
            np.random.default_rng([7, i]), replace(base, sizes=None))
    one = WorldConfig(num_frames=16, max_objects=3, sizes=((64, 112),))
    ep = sample_episode(np.random.default_rng(3), one)
    assert ep == sample_episode(np.random.default_rng(3), replace(base, height=64, width=112))
    assert (sample_still(np.random.default_rng(4), one).width,
            single_image_sample(np.random.default_rng(4), one).frames.shape[1:3]) == (112, (64, 112))


def test_rates_draw_a_frame_rate_per_episode_and_none_changes_no_draw() -> None:
    rates = (0.5, 1.0, 2.5)
    cfg = WorldConfig(num_frames=24, max_objects=3, rates=[0.5, 1, 2.5])  # from JSON
    assert cfg.rates == rates
    drawn = [sample_episode(np.random.default_rng([6, i]), cfg) for i in range(40)]
    assert {ep.fps for ep in drawn} == set(rates)
    for ep in drawn:  # the frame times, and so every "when" answer, follow the drawn rate
        assert np.allclose(ep.timestamps(), np.arange(24) / ep.fps)
        for q in make_questions(ep, np.random.default_rng(0), tasks=("time",), n=20):
            if q.form == "when_appear":
                obj = ep.objects[int(q.param("object"))]
                assert q.answer == seconds_text(seconds_of(obj.t_in, ep.fps))
    base = WorldConfig(num_frames=16, max_objects=3)
    for i in range(10):  # None: the episodes recorded before rates existed
        assert sample_episode(np.random.default_rng([7, i]), base) == sample_episode(
            np.random.default_rng([7, i]), replace(base, rates=None))
    one = replace(base, rates=(1.0,))
    assert sample_episode(np.random.default_rng(3), one) == sample_episode(
        np.random.default_rng(3), replace(base, fps=1.0))
    both = WorldConfig(num_frames=16, max_objects=3, sizes=((48, 48), (64, 112)),
                       rates=(1.0, 2.0))
    assert len({(ep.width, ep.fps) for ep in (sample_episode(np.random.default_rng(i), both)
                                               for i in range(40))}) == 4


def test_under_one_frame_a_second_nothing_is_asked_of_a_second_between_frames() -> None:
    cfg = WorldConfig(num_frames=24, max_objects=1, fps=0.4)  # a frame every 2.5 s
    asked = 0
    for i in range(40):
        ep = sample_episode(np.random.default_rng([9, i]), cfg)
        for q in make_questions(ep, np.random.default_rng(i), tasks=("time",), n=30):
            if q.form == "on_screen":
                second = int(q.param("second"))
                a, b = on_screen_window(ep, second)
                assert min(abs(f / ep.fps - second) for f in range(a, b)) <= 0.5
                asked += 1
    assert asked > 0


def test_a_multi_image_sample_draws_one_size_for_all_its_images() -> None:
    cfg = WorldConfig(sizes=((48, 48), (64, 112), (96, 72)))
    shapes = set()
    for i in range(20):
        s = multi_image_sample(np.random.default_rng(i), cfg)
        assert {(ep.height, ep.width) for ep in s.episodes} == {s.frames.shape[1:3]}
        shapes.add(s.frames.shape[1:3])
    assert len(shapes) == 3


def test_one_camera_tools_refuse_a_world_of_many_sizes_or_rates() -> None:
    from training.niah import make_haystack
    from training.vision_pretrain import PretrainConfig, pretrain

    with pytest.raises(ValueError, match="height and width"):
        make_haystack(64, 0.5, seed=0, world={"sizes": [[64, 112]]})
    with pytest.raises(ValueError, match="frame rate as fps"):
        make_haystack(64, 0.5, seed=0, world={"rates": [1, 2]})
    with pytest.raises(ValueError, match="sizes"):
        pretrain(PretrainConfig(world={"sizes": [[64, 112]]}))


def test_stay_prob_keeps_objects_to_the_last_frame_and_zero_changes_no_draw() -> None:
    base = WorldConfig(num_frames=24, max_objects=3)
    for i in range(20):  # 0: the episodes the recorded evaluations drew
        a = sample_episode(np.random.default_rng([4, i]), base)
        b = sample_episode(np.random.default_rng([4, i]), replace(base, stay_prob=0.0))
        assert a == sample_episode(np.random.default_rng([4, i]), replace(base, stay_prob=None))
        assert a == b

    def share_at_end(p: float | None) -> float:
        cfg = replace(base, stay_prob=p)
        objs = [o for i in range(300)
                for o in sample_episode(np.random.default_rng([5, i]), cfg).objects]
        return float(np.mean([o.t_out == cfg.num_frames for o in objs]))

    assert share_at_end(1.0) == 1.0
    free, some = share_at_end(None), share_at_end(0.4)
    assert free < 0.25 and some > free + 0.25  # ~0.4 + 0.6 * free


@pytest.mark.parametrize("cfg", [
    WorldConfig(num_frames=32, max_objects=3, sign_prob=0.5, offline_prob=0.9),
    WorldConfig(num_frames=40, fps=1.0, max_objects=2, offline_prob=1.0, offline_frames=(4, 7)),
    WorldConfig(num_frames=48, fps=4.0, max_objects=4, cut_prob=0.8, offline_prob=1.0,
                offline_frames=(8, 14)),
], ids=["2fps", "1fps", "4fps"])
def test_an_outage_hides_no_event_and_is_the_gap_the_memory_finds(cfg: WorldConfig) -> None:
    from streamvxl.gaps import found_gaps
    from streamvxl.world.render import camera_feed

    placed = 0
    for i in range(60):
        ep = sample_episode(np.random.default_rng([6, i]), cfg, "eval")
        assert ep.outages_drawn
        frames, stamps = camera_feed(ep)
        whole = render(ep)
        if ep.offline is None:
            assert len(frames) == ep.num_frames and found_gaps(stamps) == []
            continue
        placed += 1
        a, b = ep.offline
        lo, hi = cfg.offline_frames
        assert a >= 4 and lo <= b - a <= hi and b <= ep.num_frames - 1
        kept = [t for t in range(ep.num_frames) if not a <= t < b]
        assert np.array_equal(frames, whole[kept]) and np.allclose(stamps, np.array(kept) / cfg.fps)
        for o in ep.objects:  # enters and leaves where the camera saw it
            assert not a - 1 <= o.t_in <= b and not a - 1 <= o.t_out <= b
        assert all(g.t_out - 1 < a - 1 or g.t_in > b for g in ep.signs)  # visible frames
        assert all(not a - 1 <= c <= b for c in ep.cuts)
        gaps = found_gaps(stamps)
        assert [(g.start, g.end) for g in gaps] == [((a - 1) / cfg.fps, b / cfg.fps)]
    assert placed >= 15


def test_an_outage_is_checked_and_a_world_without_them_changes_no_draw() -> None:
    bg = Backdrop("solid", ((120, 120, 120), (120, 120, 120)))
    star = WorldObject("star", "red", 5, 6, 11, 8, 8)
    ok = Episode(20, 1.0, 16, 16, (Scene(0, bg),), (star,), offline=(13, 18))
    assert ok.delivered().tolist() == [*range(13), 18, 19]
    with pytest.raises(ValueError, match="next to or inside the outage"):
        Episode(20, 1.0, 16, 16, (Scene(0, bg),), (star,), offline=(8, 11))  # hides the exit
    with pytest.raises(ValueError, match="next to or inside the outage"):
        Episode(20, 1.0, 32, 32, (Scene(0, bg),), (star,), offline=(13, 18),
                signs=(Sign("CAT", 12, 13, 0, 0),))  # a sign the frame before it
    with pytest.raises(ValueError, match="first and last frames delivered"):
        Episode(20, 1.0, 16, 16, (Scene(0, bg),), offline=(15, 20))
    base = WorldConfig(num_frames=24, max_objects=3)
    for i in range(20):  # 0: the episodes the recorded evaluations drew
        a = sample_episode(np.random.default_rng([7, i]), base)
        assert a == sample_episode(np.random.default_rng([7, i]), replace(base, offline_prob=0.0))
        assert a.offline is None and not a.outages_drawn
