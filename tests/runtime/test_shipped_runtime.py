"""The runtime `Runtime.default` makes for streamvxl-tiny: its moment probe
(``weights/streamvxl-tiny-moments``) and how it fits frames.

- It belongs to the shipped weights: `Runtime.default` finds it and uses it (a new default model
  shipped without its own probe fails here, not silently in citations).
- Read through the product's path (`question_moment`), it tells which end of an event plain
  questions ask about, in words and of things the world never has (trucks, buildings,
  forklifts): trained on the world's phrasings, it reads the model's understanding of them.
- Its frames are fitted as the delta records (nothing: a centre crop), or as a `VideoMemory`
  over it is told.
"""

from __future__ import annotations

import pytest
import torch

from streamvxl.config import MemoryConfig
from streamvxl.memory.moments import MOMENTS
from streamvxl.model import default
from streamvxl.runtime.citations import question_moment
from streamvxl.runtime.runtime import Runtime
from tests.conftest import base_llm_unavailable


def _default_model_missing() -> str | None:
    if not default.DEFAULT_DELTA.is_file():
        return ("the trained streamvxl-tiny weights are not in this checkout "
                f"({default.DEFAULT_DELTA})")
    return base_llm_unavailable()


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_default_model_missing() is not None,
                                                   reason=_default_model_missing() or "")]

ASKED = {
    "When did the delivery truck arrive?": "appear",
    "At what second did the dog show up?": "appear",
    "When did the person enter the room?": "appear",
    "When did the car come into view?": "appear",
    "At what time did the man leave the building?": "leave",
    "When was the cat last seen?": "leave",
    "When did the bus drive away?": "leave",
    "What time did the forklift exit the warehouse?": "leave",
    "What colour was the car?": "other",
    "Did the star appear before the circle?": "other",
    "How many people walked past?": "other",
    "What word was written on the sign?": "other",
}


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime.default(device="cpu")  # as VideoMemory() makes it


def test_the_shipped_probe_is_for_the_shipped_weights(runtime: Runtime) -> None:
    assert runtime.moment_probe is not None, (
        "weights/streamvxl-tiny-moments.safetensors was not trained on the shipped delta: "
        "python -m training.moment_probe --out streamvxl/weights/streamvxl-tiny-moments"
        ".safetensors")


def test_it_reads_which_end_of_an_event_plain_questions_ask_about(runtime: Runtime) -> None:
    state = runtime.new_stream(MemoryConfig())
    prompt = state.settings.config.prompt
    read = {}
    for question in ASKED:
        ids = torch.tensor(runtime.tokenizer(prompt.format_question(question),
                                             add_special_tokens=False)["input_ids"])
        p = question_moment(runtime, state, ids)
        assert p is not None
        read[question] = MOMENTS[int(p.argmax())]
    assert read == ASKED


def test_the_default_model_fits_frames_as_recorded_or_as_asked(runtime: Runtime) -> None:
    """The shipped delta records no fit: its frames are centre-cropped as it was trained; a
    `VideoMemory` given its own preprocessing over the default model uses that."""
    from streamvxl import VideoMemory
    from streamvxl.preprocess import Preprocessor

    assert default.trained_preprocess() == {} and runtime.preprocessor.fit == "crop"
    with VideoMemory(preprocessor=Preprocessor(runtime.model.image_size, fit="pad")) as mem:
        assert mem.preprocessor.fit == "pad"
