"""Objects planted in a haystack are the only ones of their shape, and the questions asked
about them are true of the whole video."""

from __future__ import annotations

import numpy as np
import pytest

from streamvxl.world import is_correct
from training.niah import make_haystack, plant_objects


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_shapes_are_unique_and_where_asked(seed: int) -> None:
    hay = plant_objects(make_haystack(600, 0.5, seed=seed, fps=1.0), (0.2, 0.7), seed=seed)
    assert len(hay.planted) == 2
    shapes = [o.shape for seg in hay.segments for o in seg.objects]
    for obj, depth in zip(hay.planted, (0.2, 0.7), strict=True):
        assert shapes.count(obj.shape) == 1
        # the segment holding it in video frames is the one at its depth
        k = max(i for i, a in enumerate(hay.offsets) if a <= round(depth * 599))
        local = [o for o in hay.segments[k].objects if o.shape == obj.shape]
        assert len(local) == 1
        assert (local[0].t_in + hay.offsets[k], local[0].t_out + hay.offsets[k]) == \
            (obj.t_in, obj.t_out)
        assert local[0].colour == obj.colour
    assert hay.needle.text == make_haystack(600, 0.5, seed=seed, fps=1.0).needle.text


def test_event_questions_are_true_of_the_video() -> None:
    hay = plant_objects(make_haystack(900, 0.1, seed=4, fps=1.0), (0.4, 0.8), seed=4)
    qas = hay.event_questions(np.random.default_rng(0))
    forms = [qa.form for qa in qas]
    assert forms == ["colour_of_shape", "first_of_two", "before", "count_shape", "when_appear",
                     "when_leave"]
    first, second = sorted(hay.planted, key=lambda o: o.t_in)
    by_shape = {o.shape: o for o in hay.planted}
    for qa in qas:
        params = dict(qa.params)
        if qa.form == "colour_of_shape":
            assert qa.answer == by_shape[params["shape"]].colour
        elif qa.form == "first_of_two":
            assert qa.answer == first.name
        elif qa.form == "count_shape":
            assert params["shape"] in by_shape and qa.answer == "1"
        elif qa.form == "when_appear":
            obj = hay.planted[int(params["object"])]
            assert is_correct(f"{obj.t_in} seconds", qa)
            assert qa.evidence == (obj.t_in, obj.t_in + 1)
        elif qa.form == "when_leave":
            obj = hay.planted[int(params["object"])]
            assert is_correct(f"{obj.t_out} seconds", qa)


def test_too_many_planted_objects_is_an_error() -> None:
    with pytest.raises(ValueError, match="at most"):
        plant_objects(make_haystack(64, 0.5, seed=0), [0.1] * 7)
