"""A procedural synthetic world: videos with exact ground truth, and questions about them.

A synthetic camera for the demo (`streamvxl.demo`), the benchmarks' cameras, the tests, and the
training recipes in ``training/`` (which compose it into training data: ``training.samples``).
Numpy (and PyAV when a camera asks for H.264): rendering and questions are exact, so every answer
can be checked (`is_correct`).

Example:
    >>> import numpy as np
    >>> from streamvxl.world import WorldConfig, make_questions, render, sample_episode
    >>> rng = np.random.default_rng(0)
    >>> episode = sample_episode(rng, WorldConfig(num_frames=32), split="train")
    >>> frames = render(episode)                      # (32, 64, 64, 3) uint8
    >>> qas = make_questions(episode, rng, split="train", n=4)
"""

from .answers import is_correct, normalize_answer
from .camera import Camera, CameraConfig
from .questions import FORMS, QA, VIDEO_TASKS, Form, Task, make_questions
from .render import camera_feed, object_map, render, render_frame
from .scene import (
    COLOURS,
    HELD_OUT_COMBOS,
    SHAPES,
    Backdrop,
    Episode,
    Scene,
    Sign,
    WorldConfig,
    WorldObject,
    sample_episode,
    sample_still,
)

__all__ = [
    "COLOURS",
    "FORMS",
    "HELD_OUT_COMBOS",
    "QA",
    "SHAPES",
    "VIDEO_TASKS",
    "Backdrop",
    "Camera",
    "CameraConfig",
    "Episode",
    "Form",
    "Scene",
    "Sign",
    "Task",
    "WorldConfig",
    "WorldObject",
    "camera_feed",
    "is_correct",
    "make_questions",
    "normalize_answer",
    "object_map",
    "render",
    "render_frame",
    "sample_episode",
    "sample_still",
]
