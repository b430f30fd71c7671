"""The camera between world and model: light, blur, noise and H.264 do what they say, any
range of frames renders as the whole does, and bad settings are errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamvxl.world import Camera, CameraConfig, WorldConfig, render, render_frame, sample_episode
from streamvxl.world.camera import _box_blur, apply_camera, h264_round_trip


def _episode(camera: Camera | None, frames: int = 12):
    ep = sample_episode(np.random.default_rng(3), WorldConfig(num_frames=frames))
    return dataclasses.replace(ep, camera=camera)


def test_the_identity_camera_changes_nothing() -> None:
    assert np.array_equal(render(_episode(Camera())), render(_episode(None)))


@pytest.mark.parametrize("camera", [Camera(0.7, 1.2, 2, "x", 6.0, None, 5),
                                    Camera(1.0, 1.0, 0, "xy", 3.0, 30, 6)])
def test_a_frame_renders_as_in_the_whole(camera: Camera) -> None:
    ep = _episode(camera)
    whole = render(ep)
    for t in (0, 5, 11):
        assert np.array_equal(render_frame(ep, t), whole[t])
    assert np.array_equal(render(ep, 3, 9), whole[3:9])


def test_light_drifts_from_the_first_to_the_last_frame() -> None:
    clean = render(_episode(None)).astype(np.float64)
    seen = render(_episode(Camera(0.5, 0.9))).astype(np.float64)
    assert seen[0].mean() == pytest.approx(0.5 * clean[0].mean(), abs=0.6)
    assert seen[-1].mean() == pytest.approx(0.9 * clean[-1].mean(), abs=0.6)


def test_box_blur_is_the_mean_of_its_neighbours() -> None:
    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    got = _box_blur(x, 2, axis=2)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)), mode="edge")
    slow = np.stack([padded[:, :, j:j + 3].mean(2) for j in range(7)], axis=2)
    np.testing.assert_allclose(got, slow, atol=1e-3)


def test_noise_has_its_deviation_and_is_seeded_per_frame() -> None:
    flat = np.full((4, 32, 32, 3), 128, np.uint8)
    a = apply_camera(flat, Camera(noise=8.0, seed=1), 0, 4)
    assert (a.astype(float) - 128).std() == pytest.approx(8.0, rel=0.1)
    assert np.array_equal(apply_camera(flat[2:3], Camera(noise=8.0, seed=1), 2, 4)[0], a[2])
    assert not np.array_equal(a[0], a[1])


def test_h264_keeps_the_picture_and_its_size() -> None:
    frames = render(_episode(None, frames=6))[:, :63]  # an odd width
    back = h264_round_trip(frames, crf=30)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 6
    with pytest.raises(ValueError, match="whole episode"):
        apply_camera(frames[1:], Camera(crf=30), 1, 6)


def test_world_config_reads_a_camera_from_json_and_checks_it() -> None:
    cfg = WorldConfig(num_frames=8, camera={"noise": [0, 4], "h264_prob": 0.0})
    assert cfg.camera == CameraConfig(noise=(0, 4), h264_prob=0.0)
    ep = sample_episode(np.random.default_rng(0), cfg)
    assert ep.camera is not None and ep.camera.crf is None and 0 <= ep.camera.noise <= 4
    for bad in ({"noise": (5, 1)}, {"gain": (0, 1)}, {"blur": (0, 9)}, {"h264_prob": 2},
                {"crf": (10, 60)}):
        with pytest.raises(ValueError, match="CameraConfig"):
            CameraConfig(**bad)
    with pytest.raises(ValueError, match="blur_axis"):
        Camera(blur_axis="z")
