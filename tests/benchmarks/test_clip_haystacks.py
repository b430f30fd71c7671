"""`benchmarks.clip_haystacks`: its per-question verdicts against a frame-by-frame recomputation
from the rendered haystack, and a candidate file of the shipped weights scores as the shipped."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open_clip")

from benchmarks.clip_haystacks import SHIPPED, haystack_rows, load_scorers  # noqa: E402
from benchmarks.recall_eval import haystack, named_spans  # noqa: E402
from streamvxl.memory.clip_scorer import WORLD_CLIP_FILE  # noqa: E402


def test_verdicts_match_a_frame_by_frame_recomputation() -> None:
    from importlib import resources

    with resources.as_file(resources.files("streamvxl") / "weights" / WORLD_CLIP_FILE) as f:
        scorers = load_scorers([f])
    hours, depth, seed = 0.03, 0.3, 7
    rows = haystack_rows(hours, depth, seed, scorers)
    assert rows and {SHIPPED, "world-clip"} <= set(rows[0])
    for r in rows:  # the same weights under two names: the same verdicts
        assert r[SHIPPED]["top_shows_object"] == r["world-clip"]["top_shows_object"]
        assert r[SHIPPED]["outscored_by"] == r["world-clip"]["outscored_by"]
    hay = haystack(108, depth, seed)
    frames = np.concatenate(list(hay.chunks()))
    qa = hay.event_questions(np.random.default_rng(seed))
    scorer = scorers[SHIPPED]
    for r, q in zip(rows, qa, strict=True):
        assert r["question"] == q.question
        text = scorer.embed_text([q.question])[0]
        cos = [float(scorer.embed_frames(frames[t:t + 1])[0] @ text) for t in range(len(frames))]
        best = int(np.argmax(cos))
        shown = any(lo <= best < hi for lo, hi in named_spans(q, hay.planted))
        assert r[SHIPPED]["top_shows_object"] == shown
        named_best = max(cos[t] for lo, hi in named_spans(q, hay.planted) for t in range(lo, hi))
        assert r[SHIPPED]["best_named"] == pytest.approx(named_best, abs=1e-5)
