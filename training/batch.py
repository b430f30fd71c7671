"""From a world `Sample` to a training example for the memory, and its window plan.

An `Example` is what the data side knows before the model runs: preprocessed frames, the ids of
the prompt prefix (the sink), and one (question, answer) id pair per QA. The *intervals* come
later, from the model itself: the frames' CLS embeddings (computed in the training forward, where
the vision tower also makes the visual tokens) go through the offline boundary detector
(`streamvxl.intervals.segment`) -- "dynamic intervals during training". `plan_windows` then cuts
each interval into windows of at most ``window`` raw tokens (exactly as `encode_interval` would)
and draws one compression ratio *per window* from the current curriculum stage's ratio set, as
Video-XL's training does. The draw uses the example's own ``seed``, so the plan is a pure
function of (example, embeddings): resumed and distributed runs make the same choices. An
example with an *open tail* keeps its last interval's windows uncompressed: the memory a live
stream is asked from, its interval still open, its frames read raw after the stored ones
(`streamvxl.runtime.Runtime.answer`).

Images are short videos: a single image is a 1-frame video, an image set a 2-4-frame one.

Letters: N frames, S image side, T visual tokens per frame, Cv vision width, P/Q/A prefix,
question and answer token counts.

Example:
    >>> import numpy as np
    >>> from streamvxl.intervals import BoundaryConfig
    >>> plan = plan_windows(np.eye(4)[[0] * 6 + [1] * 6], tokens_per_frame=4, window=16,
    ...                     boundary=BoundaryConfig(window=2, min_frames=2, max_frames=12),
    ...                     ratios=(2, 4), seed=0)
    >>> [(w.interval, w.start, w.end) for w in plan]       # 2 intervals of 6 frames x 4 tokens
    [(0, 0, 16), (0, 16, 24), (1, 24, 40), (1, 40, 48)]
    >>> all(w.ratio in (2, 4) for w in plan)
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import get_args

import numpy as np
import torch

from streamvxl.gaps import found_gaps
from streamvxl.intervals import BoundaryConfig, segment
from streamvxl.model.frame_time import StampIds
from streamvxl.model.layout import split_windows
from streamvxl.preprocess import Preprocessor
from streamvxl.prompt import PromptTemplate
from streamvxl.world import QA, VIDEO_TASKS, Task, WorldConfig
from streamvxl.world.questions import ExistNaming
from training.baselines import STILLS_FPS
from training.reading import sample_reading_labels
from training.samples import (
    Sample,
    existence_still_sample,
    multi_image_sample,
    single_image_sample,
    video_sample,
)

READING_FORMS: tuple[str, ...] = ("needle_word", "needle_number")
"""The question forms of a reading sample (the still's sign is a word or a number)."""


@dataclass(frozen=True)
class TaskMix:
    """Proportions of the composite data (normalised; a zero weight turns a kind off)."""

    video: float = 0.7
    """Videos of ``WorldConfig.num_frames`` frames with `make_questions` questions."""
    image: float = 0.15
    """Single stills (attribute, count, sign questions)."""
    multi_image: float = 0.15
    """Sets of 2-4 stills with a comparison question."""
    video_tasks: tuple[Task, ...] = VIDEO_TASKS
    """Which video tasks to ask (a subset of `streamvxl.world.VIDEO_TASKS`)."""
    video_task_weights: tuple[tuple[Task, float], ...] = ()
    """How often each of ``video_tasks`` is asked: a task's relative chance in each video
    question's draw (a task not named weighs 1; a mapping is accepted and kept as sorted
    pairs). Empty: uniform over the tasks a video has questions for, as every run before
    drew. A curriculum that kept "no" and the present lost "which of two came first" and "when
    did X appear" (docs/results.md, finding 22); a uniform draw over eight tasks gives each an
    eighth."""
    reading: float = 0.0
    """Stills that always show a sign, asked only what it says (`READING_FORMS`): a reading
    stage teaches the model to copy characters out of visual tokens before it must keep them
    through compression (in the default mix needles are ~6 % of the questions)."""
    long_video: float = 0.0
    """Videos of ``long_frames`` frames asked only ``long_tasks`` (kind "long_video"): a
    needle-only stage on long videos after the curriculum found long haystacks and lost the
    rest (run 5), so long videos belong in the curriculum's own mix."""
    long_frames: int = 128
    """Frames of a long video."""
    long_tasks: tuple[Task, ...] = ("needle",)
    """What long videos are asked (a subset of `streamvxl.world.VIDEO_TASKS`)."""
    long_number_prob: float | None = None
    """Share of long videos' signs that show a number (None: the world's ``number_prob``).
    Run 6's long haystacks found 39 / 40 words and 16 / 35 numbers: numbers are what long
    videos still lose."""

    grammar_prob: float = 0.0
    """Share of the first five tasks' video questions worded by the training grammar
    (`streamvxl.world.questions.template_train_grammar`) instead of their template lists: a
    model trained on the lists alone answered their wording, 11 points lower in a held-out
    grammar (docs/results.md). 0 draws what the runs before it drew."""
    exist_stills: float = 0.0
    """Stills asked only whether they show a thing (`training.samples.EXIST_STILL_FORMS`,
    kind "image"): existence taught on one frame first, as reading was -- no model told
    present from absent things in a video's memory, uncompressed ones included."""
    exist_naming: ExistNaming = "recorded"
    """How existence questions name absent things (`streamvxl.world.questions.ExistNaming`):
    "recorded" names them by both parts far more often than present ones, so a model learns
    the answer from the wording; "balanced" names both alike."""

    def __post_init__(self) -> None:
        if self.exist_naming not in get_args(ExistNaming):
            raise ValueError(f"TaskMix.exist_naming must be one of {get_args(ExistNaming)}, "
                             f"got {self.exist_naming!r}")
        if not 0.0 <= self.grammar_prob <= 1.0:
            raise ValueError(f"TaskMix.grammar_prob must be in [0, 1], got {self.grammar_prob}")
        weights = (self.video, self.image, self.multi_image, self.reading, self.long_video,
                   self.exist_stills)
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"TaskMix weights must be >= 0 with a positive sum, got {weights}")
        bad = [t for t in self.video_tasks if t not in VIDEO_TASKS]
        if bad or not self.video_tasks:
            raise ValueError(f"TaskMix.video_tasks must be a non-empty subset of {VIDEO_TASKS}, "
                             f"got {self.video_tasks}")
        pairs = self.video_task_weights  # a mapping, or pairs (a config's JSON gives lists)
        pairs = pairs.items() if isinstance(pairs, Mapping) else pairs
        object.__setattr__(self, "video_task_weights",  # frozen: normalised once, here
                           tuple(sorted((str(t), float(w)) for t, w in pairs)))
        weights = dict(self.video_task_weights)
        if (any(t not in self.video_tasks for t in weights)
                or any(not w >= 0 for w in weights.values())
                or not any(weights.get(t, 1.0) > 0 for t in self.video_tasks)):
            raise ValueError("TaskMix.video_task_weights must weigh tasks of video_tasks "
                             f"{self.video_tasks} >= 0, one of them > 0; got {weights}")
        bad = [t for t in self.long_tasks if t not in VIDEO_TASKS]
        if bad or not self.long_tasks:
            raise ValueError(f"TaskMix.long_tasks must be a non-empty subset of {VIDEO_TASKS}, "
                             f"got {self.long_tasks}")
        if self.long_frames < 1:
            raise ValueError(f"TaskMix.long_frames must be >= 1, got {self.long_frames}")
        if self.long_number_prob is not None and not 0.0 <= self.long_number_prob <= 1.0:
            raise ValueError("TaskMix.long_number_prob must be in [0, 1] or None, got "
                             f"{self.long_number_prob}")

    @property
    def probabilities(self) -> np.ndarray:
        """(6,) chances of video, image, multi-image, reading, long video, existence stills.
        Zero shares of the later kinds draw exactly what the three-kind mix drew (the
        cumulative sum ends on the same 1.0)."""
        w = np.array([self.video, self.image, self.multi_image, self.reading, self.long_video,
                      self.exist_stills], dtype=np.float64)
        return w / w.sum()


@dataclass
class Example:
    """One training example: frames and the token ids around them."""

    kind: str
    """"video", "image", "multi_image" or "long_video"."""
    pixels: torch.Tensor
    """(N, 3, S, S) preprocessed frames."""
    prefix_ids: torch.Tensor
    """(P,) int64: the prompt before the video; encoded as the sink."""
    questions: list[torch.Tensor]
    """(Q,) int64 per QA: the question with its chat wrapping (ends with the assistant turn)."""
    answers: list[torch.Tensor]
    """(A,) int64 per QA: the answer followed by the end-of-turn token; the loss targets."""
    ratios: tuple[int, ...]
    """The curriculum stage's ratio set; `plan_windows` draws each window's ratio from it.
    Empty: the memory keeps every raw token (no VSTs), as the ``full`` baseline's does."""
    seed: int
    """Seeds the per-window ratio draws."""
    qa: tuple[QA, ...]
    """The ground truth the ids came from (for logging and evaluation)."""
    reading: torch.Tensor | None = None
    """(N, T, S) int64 reading labels of the frames' visual tokens (`training.reading`), for
    the recipe's auxiliary reading loss; None: not asked for."""
    open_tail: bool = False
    """The last interval keeps every raw token (`plan_windows`), as a live stream's open
    interval is read when a question comes; the others are compressed at ``ratios``."""
    stamp_ids: torch.Tensor | None = None
    """(N, K) int64 the frames' time stamps (`streamvxl.model.frame_time`), for a model that
    stamps frames; None: it does not."""

    @property
    def num_answer_tokens(self) -> int:
        return sum(int(a.numel()) for a in self.answers)


def draw_sample(rng: np.random.Generator, world: WorldConfig, mix: TaskMix,
                questions: int = 1) -> Sample:
    """One composite sample with at least one QA (kinds drawn by ``mix``; redrawn when a
    sample happens to have no unambiguous question)."""
    while True:
        kind = int(rng.choice(6, p=mix.probabilities))
        if kind == 0:
            sample = video_sample(rng, world, tasks=mix.video_tasks, n=questions,
                                  grammar_prob=mix.grammar_prob,
                                  exist_naming=mix.exist_naming,
                                  task_weights=dict(mix.video_task_weights))
        elif kind == 1:
            sample = single_image_sample(rng, world, n=questions)
        elif kind == 2:
            sample = multi_image_sample(rng, world, n=questions)
        elif kind == 3:
            sample = single_image_sample(rng, world, n=questions, sign=True, forms=READING_FORMS)
        elif kind == 5:
            sample = existence_still_sample(rng, world, n=questions)
        else:
            # a needle-only long video with no sign has no question and would be redrawn,
            # shrinking the configured share: give every such video a sign
            needles_only = set(mix.long_tasks) == {"needle"}
            numbers = world.number_prob if mix.long_number_prob is None else mix.long_number_prob
            long_world = replace(world, num_frames=mix.long_frames, number_prob=numbers,
                                 sign_prob=1.0 if needles_only else world.sign_prob)
            sample = replace(video_sample(rng, long_world, tasks=mix.long_tasks, n=questions,
                                          grammar_prob=mix.grammar_prob,
                                          exist_naming=mix.exist_naming), kind="long_video")
        if sample.qa:
            return sample


def _ids(tokenizer, text: str, vocab_size: int) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"the tokenizer turned {text!r} into no tokens")
    if max(ids) >= vocab_size:
        raise ValueError(f"token id {max(ids)} of {text!r} is outside the model's vocabulary "
                         f"({vocab_size}); the tokenizer does not match the model")
    return torch.tensor(ids, dtype=torch.int64)


def make_example(sample: Sample, tokenizer, prompt: PromptTemplate, preprocess: Preprocessor,
                 ratios: Sequence[int], seed: int, vocab_size: int,
                 end_of_turn: str = "<|im_end|>", reading_cell: int | None = None,
                 open_tail: bool = False, frame_time: bool = False) -> Example:
    """Tokenise and preprocess a sample: every QA of it becomes one (question, answer) pair
    over the same memory (compression is query-agnostic, so one memory serves them all).
    ``reading_cell``: the px side of the cell one visual token pools; given, the example
    carries its frames' reading labels (`training.reading.sample_reading_labels`).
    ``open_tail``: its last interval stays raw (`Example.open_tail`). ``frame_time``: the
    model stamps frames (`VisualConfig.frame_time`): the example carries its frames' stamps,
    counted from its first frame (images at 1 / `STILLS_FPS` s apart, as
    `training.baselines.encode_video` times them)."""
    pixels = preprocess(list(sample.frames))  # (N, 3, S, S)
    stamp_ids = None
    if frame_time:
        times = sample.timestamps if sample.timestamps is not None else \
            np.arange(len(sample.frames)) / STILLS_FPS
        stamp_ids = StampIds(tokenizer)([float(t - times[0]) for t in times])
    # the gaps a `VideoMemory` fed these timestamps tells before every question
    gaps = found_gaps(sample.timestamps) if sample.timestamps is not None else []
    return Example(
        kind=sample.kind,
        pixels=pixels,
        prefix_ids=_ids(tokenizer, prompt.prefix, vocab_size),
        questions=[_ids(tokenizer, prompt.format_question(qa.question, gaps), vocab_size)
                   for qa in sample.qa],
        answers=[_ids(tokenizer, qa.answer + end_of_turn, vocab_size) for qa in sample.qa],
        ratios=tuple(ratios),
        seed=seed,
        qa=sample.qa,
        reading=None if reading_cell is None else sample_reading_labels(sample, reading_cell),
        open_tail=open_tail,
        stamp_ids=stamp_ids,
    )


@dataclass(frozen=True)
class WindowPlan:
    """One encoder window: raw tokens [start, end) of the example, compressed at ``ratio``."""

    interval: int
    """Index of the interval the window belongs to."""
    start: int
    end: int
    ratio: int | None
    """None: uncompressed (every raw token's K/V is kept)."""


def plan_windows(embeddings: torch.Tensor | np.ndarray, tokens_per_frame: int, window: int,
                 boundary: BoundaryConfig, ratios: Sequence[int], seed: int,
                 open_tail: bool = False) -> list[WindowPlan]:
    """Intervals from the boundary detector over per-frame embeddings (N, Cv), cut into
    windows of at most ``window`` raw tokens, each with a ratio drawn uniformly from
    ``ratios`` (empty: every window uncompressed, ratio None). No raw token is lost: the
    windows tile [0, N * T). ``open_tail``: the last interval's windows are uncompressed (the
    others keep the ratios they draw without it)."""
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().to("cpu", torch.float64).numpy()
    rng = np.random.default_rng(seed)
    choices = np.asarray(ratios, dtype=np.int64)
    plan: list[WindowPlan] = []
    for i, interval in enumerate(segment(list(embeddings), boundary)):
        first = interval.start * tokens_per_frame
        num_raw = interval.num_frames * tokens_per_frame
        for s, e in split_windows(num_raw, window):
            ratio = int(rng.choice(choices)) if len(choices) else None
            plan.append(WindowPlan(i, first + s, first + e, ratio))
    if open_tail and plan:
        last = plan[-1].interval
        plan = [replace(w, ratio=None) if w.interval == last else w for w in plan]
    return plan


__all__ = ["Example", "TaskMix", "WindowPlan", "draw_sample", "make_example", "plan_windows"]
