"""Clips from outside the renderer: the files hold what the clip draws, the hand-written
answers agree with what is drawn, and the evaluation runs end to end through `open_source`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from streamvxl import open_source
from training.outside_clips import CLIPS, PIL_COLOURS, ask_clip, draw_frame, memories, write_mp4


@pytest.mark.parametrize("clip", CLIPS[:3], ids=lambda c: c.name)
def test_the_file_holds_the_drawn_frames(clip, tmp_path: Path) -> None:
    path = write_mp4(clip, tmp_path / "clip.mp4")
    frames = list(open_source(str(path), fps=clip.fps))
    assert len(frames) == round(clip.seconds * clip.fps)
    for k in (0, len(frames) // 2, len(frames) - 1):
        got = frames[k].image.astype(np.int16)
        drawn = draw_frame(clip, k / clip.fps).astype(np.int16)
        assert got.shape == (clip.height, clip.width, 3)
        # H.264 (4:2:0) loses per-pixel colour noise, not the picture: compare 8x8 blocks
        assert np.abs(_blocks(got) - _blocks(drawn)).mean() < 8
    for s in clip.shapes:  # a shape's centre has its colour in the decoded file
        k = int(np.ceil((s.t_in + s.t_out) / 2 * clip.fps)) - 1
        if not s.t_in <= k / clip.fps < s.t_out:
            continue
        t = k / clip.fps
        f = (t - s.t_in) / (s.t_out - s.t_in)
        x = int((s.start[0] + f * (s.stop[0] - s.start[0])) * clip.width)
        y = int((s.start[1] + f * (s.stop[1] - s.start[1])) * clip.height + 0.05 * clip.height)
        pixel = frames[k].image[y, x].astype(int)
        assert np.abs(pixel - np.array(PIL_COLOURS[s.colour])).max() < 60, (s, pixel)


def test_answers_agree_with_what_is_drawn() -> None:
    checked = 0
    for clip in CLIPS:
        last = (round(clip.seconds * clip.fps) - 1) / clip.fps
        at_end = [s for s in clip.shapes if s.t_in <= last < s.t_out]
        for question, answer, _, kind in clip.questions:
            q = question.lower()
            if kind == "number" and ("shapes" in q or "objects" in q):
                assert int(answer) == len(clip.shapes), question
            elif kind == "number":
                assert answer == _one(b.text for b in clip.boards), question
            elif "end" in q or "now" in q:
                want = "nothing" if not at_end else f"{at_end[0].colour} {at_end[0].shape}"
                assert answer == want and len(at_end) <= 1, question
            elif m := re.match(r"what colou?r was the (\w+)\?", q):
                assert answer == _one(s.colour for s in clip.shapes if s.shape == m[1])
            elif m := re.match(r"(was there|did) an? (\w+) (\w+)", q):
                present = any(s.colour == m[2] and s.shape == m[3] for s in clip.shapes)
                assert answer == ("yes" if present else "no"), question
            else:
                continue
            checked += 1
    assert checked >= 15


def _blocks(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[0] // 8 * 8, image.shape[1] // 8 * 8
    return image[:h, :w].reshape(h // 8, 8, w // 8, 8, 3).mean((1, 3))


def _one(values):
    items = list(values)
    assert len(items) == 1, items
    return items[0]


def test_a_clip_is_asked_end_to_end(tiny_checkpoint: Path, tmp_path: Path) -> None:
    clip = CLIPS[0]
    rows = ask_clip(clip, write_mp4(clip, tmp_path / "clip.mp4"), memories(tiny_checkpoint),
                    max_new_tokens=4)
    assert [r["question"] for r in rows] == [q for q, *_ in clip.questions]
    assert all(r["frames"] == 24 and isinstance(r["correct"], bool) for r in rows)


def test_fit_reaches_the_memorys_preprocessing(tiny_checkpoint: Path) -> None:
    for fit in ("crop", "pad"):
        with memories(tiny_checkpoint, fit)() as mem:
            assert mem.preprocessor.fit == fit
