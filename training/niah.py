"""Needle in a haystack: can the memory still read one brief sign in a long video?

A haystack is a long synthetic video made of distractor segments -- each its own scene (a fresh
backdrop, so every segment boundary is a scene cut) with objects entering, moving and leaving,
no signs -- plus one needle: a sign with a word or a number, visible for ``needle_frames``
frames starting at frame ``round(depth * (num_frames - needle_frames))`` (depth 0: the very
start, 1: the very end). The question is "What word (number) was written on the sign?",
scored with `streamvxl.world.is_correct`.

The haystack of a (seed, frame count) is the same at every depth (only the needle moves), so a
row of the grid compares depths on the same video. Frames are rendered one segment at a time
and go straight through the vision tower (`training.baselines.encode_video`): a 2048-frame
video is never held as pixels, only as visual tokens.

Run it::

    python -m training.niah --model runs/recipe/step_0000600/model --out docs/results \\
        --frames 64,128,256,512,1024,2048 --depths 0,0.25,0.5,0.75,1 --ratio 16 --trials 2

It writes ``<out>/<name>.json`` and ``<name>.md`` (a depth x frame-count grid per method).

Letters: F frames, H, W frame size.

Example:
    >>> hay = make_haystack(64, depth=0.5, seed=0, height=56, width=56)
    >>> hay.needle_span, hay.qa.task
    ((31, 33), 'needle')
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamvxl.intervals import BoundaryConfig
from streamvxl.model.videoxl import VideoXL
from streamvxl.preprocess import Preprocessor
from streamvxl.prompt import PromptTemplate
from streamvxl.world import QA, Episode, Sign, WorldConfig, is_correct, render, sample_episode
from streamvxl.world.questions import FORMS, draw_questions, form_facts, number_variants
from streamvxl.world.scene import BOARD_COLOURS, COLOURS, SHAPES, SIGN_WORDS, WorldObject, sign_size
from training.baselines import Method, build_memory, encode_video
from training.evaluate import (
    DEFAULT_BOUNDARY,
    answer_question,
    answering,
    digest_note,
    int_list,
    load_model_folder,
    model_digest,
    question_ids,
    report_parser,
    str_list,
    training_settings,
    write_json_and_markdown,
)
from training.misreads import markdown_misreads, misread_rows

log = logging.getLogger("training.niah")

DEFAULT_FRAMES = (64, 128, 256, 512, 1024, 2048)
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
NIAH_SEED_TAG = 0x41AB
"""First word of every haystack seed (apart from training's and evaluation's streams)."""
_TRIES = 30


@dataclass(frozen=True)
class Haystack:
    """A long video as consecutive segments, with one needle sign."""

    segments: tuple[Episode, ...]
    """Consecutive episodes; frame t of the video is frame ``t - offset`` of its segment."""
    needle: Sign
    """The sign in *video* frames: visible on [t_in, t_out) at (x, y)."""
    depth: float
    """Where the needle was asked to be, 0..1."""
    planted: tuple[WorldObject, ...] = ()
    """Objects of a shape no other object of the video has, in *video* frames
    (`plant_objects`): what `event_questions` asks about."""

    @property
    def num_frames(self) -> int:
        return sum(s.num_frames for s in self.segments)

    @property
    def fps(self) -> float:
        return self.segments[0].fps

    @property
    def offsets(self) -> tuple[int, ...]:
        """First video frame of each segment."""
        return tuple(int(x) for x in np.cumsum([0] + [s.num_frames for s in self.segments[:-1]]))

    @property
    def needle_span(self) -> tuple[int, int]:
        """Video frames [t_in, t_out) that show the needle."""
        return self.needle.t_in, self.needle.t_out

    @property
    def qa(self) -> QA:
        """"What word / number was written on the sign?" with its answer."""
        g = self.needle
        form = FORMS["needle_number" if g.is_number else "needle_word"]
        accepted = number_variants(int(g.text)) if g.is_number else (g.answer,)
        return QA("needle", form.name, form.templates[0], g.answer, accepted, self.needle_span,
                  form.kind, form.templates[0])

    def event_questions(self, rng: np.random.Generator) -> list[QA]:
        """The world's questions about the planted objects that stay unambiguous over the
        whole video, one per form: the colour of the <shape>; which of the two appeared first;
        did one appear before the other; how many <shapes>; when each appeared and left.
        Evidence and times are in video frames."""
        if not self.planted:
            return []
        ep = Episode(self.num_frames, self.fps, self.segments[0].height, self.segments[0].width,
                     self.segments[0].scenes[:1], self.planted)
        shapes = {o.shape for o in self.planted}
        out = []
        for name in EVENT_FORMS:
            facts = form_facts(name, ep, rng)
            if name == "count_shape":  # the shapes planted: any other one is in the haystack
                facts = [f for f in facts if dict(f.params).get("shape") in shapes]
            out += draw_questions({name: facts}, FORMS, rng, "train", 1)
        return out

    def chunks(self) -> Iterator[np.ndarray]:
        """The video, one segment at a time: (f, H, W, 3) uint8 each."""
        for seg in self.segments:
            yield render(seg)


EVENT_FORMS = ("colour_of_shape", "first_of_two", "before", "count_shape", "when_appear",
               "when_leave")
"""Question forms `Haystack.event_questions` asks (the ones a unique shape keeps unambiguous
in a long video)."""


def plant_objects(hay: Haystack, depths: Sequence[float], seed: int = 0) -> Haystack:
    """``hay`` with one object of a shape of its own at each of ``depths`` (0..1).

    Each planted object is an object the haystack already has (its motion and times kept),
    in the segment at that depth, given a shape drawn for it and a colour; every other object of
    those shapes is given another shape, so "the <shape>" names one object in the whole video.
    Depths falling in one segment move to the next segments.

    Example:
        >>> hay = plant_objects(make_haystack(256, 0.5, seed=0), (0.2, 0.8), seed=0)
        >>> len({o.shape for o in hay.planted})
        2
    """
    if len(depths) > len(SHAPES) - 1:
        raise ValueError(f"at most {len(SHAPES) - 1} planted objects, got {len(depths)}")
    rng = np.random.default_rng([NIAH_SEED_TAG, seed, hay.num_frames, 7])
    picked = [SHAPES[int(i)] for i in rng.permutation(len(SHAPES))[:len(depths)]]
    others = [x for x in SHAPES if x not in picked]
    segments = [dataclasses.replace(seg, objects=tuple(
        dataclasses.replace(o, shape=others[int(rng.integers(len(others)))])
        if o.shape in picked else o for o in seg.objects)) for seg in hay.segments]
    offsets = hay.offsets
    used: set[int] = set()
    planted = []
    for shape, depth in zip(picked, depths, strict=True):
        if not 0.0 <= depth <= 1.0:
            raise ValueError(f"depth must lie in [0, 1], got {depth}")
        frame = int(round(depth * (hay.num_frames - 1)))
        k = max(i for i, a in enumerate(offsets) if a <= frame)
        while k in used or not segments[k].objects:
            k = (k + 1) % len(segments)
        used.add(k)
        seg = segments[k]
        first = min(range(len(seg.objects)), key=lambda i: seg.objects[i].t_in)
        obj = dataclasses.replace(seg.objects[first], shape=shape,
                                  colour=tuple(COLOURS)[int(rng.integers(len(COLOURS)))])
        segments[k] = dataclasses.replace(seg, objects=tuple(
            obj if i == first else o for i, o in enumerate(seg.objects)))
        stop = obj.t_stop if obj.t_stop is None else obj.t_stop + offsets[k]
        planted.append(dataclasses.replace(obj, t_in=obj.t_in + offsets[k],
                                           t_out=obj.t_out + offsets[k], t_stop=stop))
    return dataclasses.replace(hay, segments=tuple(segments), planted=tuple(planted))


def _segment_lengths(num_frames: int, segment_frames: int) -> list[int]:
    """ceil(F / segment_frames) segments of near-equal length (no stub at the end)."""
    k = -(-num_frames // segment_frames)
    return [len(a) for a in np.array_split(np.arange(num_frames), k)]


def _boxes_during(seg: Episode, a: int, b: int) -> list[tuple[int, np.ndarray]]:
    """(object index, top-left corners (f, 2)) of the objects visible on local frames [a, b)."""
    out = []
    for i, o in enumerate(seg.objects):
        lo, hi = max(a, o.t_in), min(b, o.t_out)
        if lo < hi:
            out.append((i, o.boxes(np.arange(lo, hi))))
    return out


def _clashes(x: int, y: int, h: int, w: int, size: int, corners: np.ndarray,
             margin: int = 1) -> bool:
    """Whether the board [x, x+w) x [y, y+h) comes within ``margin`` px of any box."""
    apart_x = (corners[:, 0] + size + margin <= x) | (x + w + margin <= corners[:, 0])
    apart_y = (corners[:, 1] + size + margin <= y) | (y + h + margin <= corners[:, 1])
    return bool(np.any(~(apart_x | apart_y)))


# WorldConfig fields a haystack sets itself, as one camera, and where a caller gives each
_HAYSTACK_OWN = {"sizes": "its frame size as height and width",
                 "rates": "its frame rate as fps",
                 **{k: f"make_haystack's {k}" for k in ("num_frames", "height", "width", "fps")}}


def make_haystack(num_frames: int, depth: float, *, seed: int | Sequence[int] = 0,
                  height: int = 64, width: int = 64, fps: float = 2.0,
                  segment_frames: int = 32, needle_frames: int = 2,
                  world: dict[str, Any] | None = None, split: str = "eval") -> Haystack:
    """A haystack of ``num_frames`` frames with its needle at ``depth``.

    Args:
        num_frames: video length.
        depth: 0..1, where the needle starts (fraction of ``num_frames - needle_frames``).
        seed: selects the haystack and the needle's text (the same at every depth) and the
            needle's place (per depth).
        height, width: frame size.
        fps: frames per second.
        segment_frames: distractor segment length (each segment is one scene).
        needle_frames: frames the sign stays visible.
        world: further `WorldConfig` fields for the segments (e.g. ``max_objects``).
        split: "eval" (held-out object combinations may appear) or "train".
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must lie in [0, 1], got {depth}")
    if not 1 <= needle_frames <= num_frames:
        raise ValueError(f"need 1 <= needle_frames <= num_frames, got {needle_frames} and "
                         f"{num_frames}")
    if segment_frames < 1:
        raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
    seeds = [seed] if isinstance(seed, int) else list(seed)
    rng = np.random.default_rng([NIAH_SEED_TAG, *seeds, num_frames])
    # a None (a recorded world's "sizes": None) sets nothing
    world = {k: v for k, v in (world or {}).items() if v is not None}
    if own := sorted(set(world) & set(_HAYSTACK_OWN)):
        raise ValueError(f"a haystack is one camera: world {own} are the haystack's own; give "
                         f"{'; '.join(_HAYSTACK_OWN[k] for k in own)}, not in world")
    fields = {"max_objects": 3, **world, "cut_prob": 0.0, "sign_prob": 0.0}
    segments = []
    for n in _segment_lengths(num_frames, segment_frames):
        cfg = WorldConfig(num_frames=n, height=height, width=width, fps=fps, **fields)
        segments.append(sample_episode(rng, cfg, split))
    scale = WorldConfig(num_frames=1, height=height, width=width, **fields).font_scale
    if rng.random() < 0.5:
        text = str(int(rng.integers(0, 1000)))
    else:
        text = SIGN_WORDS[int(rng.integers(len(SIGN_WORDS)))]
    board = BOARD_COLOURS[int(rng.integers(len(BOARD_COLOURS)))]
    h, w = sign_size(text, scale)
    if h > height or w > width:
        raise ValueError(f"a {h}x{w} sign does not fit {height}x{width} frames")

    # the needle's place: clear of every object visible while it shows
    t_in = int(round(depth * (num_frames - needle_frames)))
    t_out = t_in + needle_frames
    place = np.random.default_rng([NIAH_SEED_TAG, *seeds, num_frames, round(depth * 1e6)])
    offsets = np.cumsum([0] + [s.num_frames for s in segments])
    touched = [k for k in range(len(segments)) if offsets[k] < t_out and offsets[k + 1] > t_in]
    seen = [(k, i, c, segments[k].objects[i].size) for k in touched
            for i, c in _boxes_during(segments[k], t_in - offsets[k], t_out - offsets[k])]
    for _ in range(_TRIES):
        x = int(place.integers(0, width - w + 1))
        y = int(place.integers(0, height - h + 1))
        if not any(_clashes(x, y, h, w, size, c) for _, _, c, size in seen):
            break
    # no free place found: the last one tried, without the objects in its way
    drop = {(k, i) for k, i, c, size in seen if _clashes(x, y, h, w, size, c)}
    for k in touched:
        a, b = max(t_in - offsets[k], 0), min(t_out - offsets[k], segments[k].num_frames)
        objects = tuple(o for i, o in enumerate(segments[k].objects) if (k, i) not in drop)
        segments[k] = dataclasses.replace(segments[k], objects=objects,
                                          signs=(Sign(text, int(a), int(b), x, y, scale, board),))
    return Haystack(tuple(segments), Sign(text, t_in, t_out, x, y, scale, board), depth)


def niah(model: VideoXL | str | Path, tokenizer: Any = None, *,
         frame_counts: Sequence[int] = DEFAULT_FRAMES, depths: Sequence[float] = DEFAULT_DEPTHS,
         ratio: int = 16, methods: Sequence[Method] = ("vst",), trials: int = 1, seed: int = 0,
         segment_frames: int = 32, needle_frames: int = 2, world: dict[str, Any] | None = None,
         fps: float = 2.0, boundary: BoundaryConfig | None = None, window: int | None = None,
         max_new_tokens: int = 8, prompt: PromptTemplate | None = None,
         preprocess: Preprocessor | None = None, device: str | None = None,
         predictions: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Needle accuracy over frame counts x depths at one ratio.

    Args:
        model: a `VideoXL`, a model folder, or ``"tiny-random"``.
        tokenizer: the model's tokenizer (None: read from the folder).
        frame_counts: video lengths.
        depths: needle positions, 0..1.
        ratio: the compression ratio (and so the budget of the baselines).
        methods: any of ``training.baselines.METHODS`` (``full`` grows with the video).
        trials: haystacks per (frame count, depth); each has its own needle text.
        seed: selects the haystacks.
        segment_frames, needle_frames, world, fps: see `make_haystack`.
        boundary: interval detection (None: the recipe's default).
        window: raw tokens per encoder window (None: the model's).
        max_new_tokens: greedy answer length cap.
        prompt, preprocess, device: as in `training.evaluate.evaluate`.
        predictions: when a list, one record per answer is appended.

    Returns:
        One row per (method, frames, depth): ``{"method", "ratio", "frames", "depth", "n",
        "correct", "accuracy", "memory_tokens"}`` (memory tokens: mean, sink excluded).
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    answer_with = answering(model, tokenizer, methods, preprocess=preprocess, device=device,
                            prompt=prompt, boundary=boundary, window=window,
                            max_new_tokens=max_new_tokens)
    runtime, settings, decoding = answer_with
    model = runtime.model

    tally: dict[tuple[str, int, float], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    t0 = time.perf_counter()
    for n in frame_counts:
        for depth in depths:
            for trial in range(trials):
                hay = make_haystack(n, depth, seed=(seed, trial), height=model.image_size,
                                    width=model.image_size, fps=fps,
                                    segment_frames=segment_frames, needle_frames=needle_frames,
                                    world=world)
                name = f"niah-{n}-{depth:g}-{trial}"
                video = encode_video(runtime, hay.chunks(), settings.boundary, fps, name=name)
                qa = hay.qa
                q_ids = question_ids(answer_with, qa.question)
                for method in methods:
                    memory = build_memory(runtime, settings, video, method,
                                          None if method == "full" else ratio)
                    text = answer_question(memory, qa.question, q_ids, decoding)
                    ok = is_correct(text, qa)
                    cell = tally[(method, n, depth)]
                    cell[0] += ok
                    cell[1] += 1
                    cell[2] += memory.memory_tokens
                    if predictions is not None:
                        predictions.append({
                            "video": name, "method": method, "ratio": memory.ratio,
                            "frames": n, "depth": depth, "needle_span": list(hay.needle_span),
                            "answer": qa.answer, "prediction": text, "correct": bool(ok),
                            "memory_tokens": memory.memory_tokens})
            log.info("%d frames, depth %g: %s (%.1f s so far)", n, depth,
                     ", ".join(f"{m} {tally[(m, n, depth)][0]}/{trials}" for m in methods),
                     time.perf_counter() - t0)
    rows = []
    for method in methods:
        for n in frame_counts:
            for depth in depths:
                correct, count, tokens = tally[(method, n, depth)]
                rows.append({"method": method, "ratio": None if method == "full" else ratio,
                             "frames": n, "depth": depth, "n": count, "correct": correct,
                             "accuracy": correct / count, "memory_tokens": tokens / count})
    return rows


def sign_kind_rows(predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy per (method, frame count, sign kind) over all depths and trials: a word is one
    of `SIGN_WORDS`, a number needs its digits read in order. ``{"method", "frames", "kind",
    "n", "correct"}`` per cell."""
    tally: dict[tuple[str, int, str], list[int]] = defaultdict(lambda: [0, 0])
    for p in predictions:
        kind = "number" if str(p["answer"]).isdigit() else "word"
        cell = tally[(p["method"], p["frames"], kind)]
        cell[0] += bool(p["correct"])
        cell[1] += 1
    return [{"method": m, "frames": f, "kind": k, "n": n, "correct": c}
            for (m, f, k), (c, n) in tally.items()]


def markdown_grid(rows: list[dict[str, Any]], notes: Sequence[str] = (),
                  kinds: Sequence[dict[str, Any]] = ()) -> str:
    """Per method: accuracy % with depths down and frame counts across, and a mean row; then,
    when given (`sign_kind_rows`), right / asked per sign kind and frame count."""
    lines = ["# Needle in a haystack", ""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        frames = sorted({r["frames"] for r in mine})
        depths = sorted({r["depth"] for r in mine})
        cell = {(r["frames"], r["depth"]): r for r in mine}
        ratio = mine[0]["ratio"]
        lines += [f"## {method}" + (f" at {ratio}x" if ratio else " (uncompressed)")
                  + f": accuracy % (n = {mine[0]['n']} per cell)", "",
                  "| depth | " + " | ".join(f"{f} fr" for f in frames) + " |",
                  "|---|" + "---:|" * len(frames)]
        for d in depths:
            lines.append(f"| {d:g} | " + " | ".join(
                f"{100 * cell[(f, d)]['accuracy']:.0f}" for f in frames) + " |")
        means = [np.mean([cell[(f, d)]["accuracy"] for d in depths]) for f in frames]
        lines.append("| mean | " + " | ".join(f"{100 * m:.0f}" for m in means) + " |")
        tokens = [np.mean([cell[(f, d)]["memory_tokens"] for d in depths]) for f in frames]
        lines += ["| memory tokens | " + " | ".join(f"{t:.0f}" for t in tokens) + " |", ""]
    if kinds:
        frames = sorted({k["frames"] for k in kinds})
        cell = {(k["method"], k["frames"], k["kind"]): k for k in kinds}
        lines += ["## by sign kind: right / asked, over all depths", "",
                  "| method, sign | " + " | ".join(f"{f} fr" for f in frames) + " |",
                  "|---|" + "---:|" * len(frames)]
        for method in dict.fromkeys(k["method"] for k in kinds):
            for kind in ("word", "number"):
                vals = [cell.get((method, f, kind)) for f in frames]
                if any(vals):
                    lines.append(f"| {method}, {kind} | " + " | ".join(
                        "-" if v is None else f"{v['correct']} / {v['n']}" for v in vals) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Path]:
    p = report_parser("training.niah", __doc__, "niah")
    p.add_argument("--frames", type=int_list, default=DEFAULT_FRAMES, help="e.g. 64,256,2048")
    p.add_argument("--depths", type=lambda s: tuple(float(x) for x in s.split(",")),
                   default=DEFAULT_DEPTHS, help="e.g. 0,0.5,1")
    p.add_argument("--ratio", type=int, default=16)
    p.add_argument("--methods", type=str_list, default=("vst",), help="e.g. vst,last_n")
    p.add_argument("--trials", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--segment-frames", type=int, default=32)
    p.add_argument("--needle-frames", type=int, default=2)
    p.add_argument("--world", type=json.loads, help="JSON of further WorldConfig fields")
    p.add_argument("--boundary", type=json.loads, help="JSON of BoundaryConfig fields")
    p.add_argument("--window", type=int, help="raw tokens per encoder window")
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")

    trained = training_settings(args.model)
    device = None if args.device == "auto" else args.device
    digest = model_digest(args.model)  # of the file as loaded, before a long run
    model, tokenizer, preprocess = load_model_folder(args.model, args.tokenizer, device)
    # a haystack is one camera (one size, one rate) at the model's size, with its own needle
    one_camera = ("cut_prob", "sign_prob", "max_signs", "sizes", "rates")
    world = {k: v for k, v in trained.get("world", {}).items()
             if k not in one_camera} | (args.world or {})
    boundary = BoundaryConfig(**(args.boundary or trained.get("boundary")
                                 or dataclasses.asdict(DEFAULT_BOUNDARY)))
    window = args.window or trained.get("window")
    predictions: list[dict[str, Any]] = []
    rows = niah(model, tokenizer, frame_counts=args.frames, depths=args.depths,
                ratio=args.ratio, methods=args.methods, trials=args.trials, seed=args.seed,
                segment_frames=args.segment_frames, needle_frames=args.needle_frames,
                world=world, boundary=boundary, window=window,
                max_new_tokens=args.max_new_tokens, preprocess=preprocess,
                predictions=predictions)
    settings = {"model": str(args.model), "model_tensors_sha256": digest,
                "frames": list(args.frames),
                "depths": list(args.depths), "ratio": args.ratio, "methods": list(args.methods),
                "trials": args.trials, "seed": args.seed, "segment_frames": args.segment_frames,
                "needle_frames": args.needle_frames, "world": world,
                "boundary": dataclasses.asdict(boundary),
                "window": window or model.config.vst.window,
                "frame_tokens": model.tokens_per_frame,
                "max_new_tokens": args.max_new_tokens}
    notes = [f"model `{args.model}`{digest_note(settings)}; {args.trials} haystack(s) per cell, "
             f"seed {args.seed}; "
             f"segments of {args.segment_frames} frames; the sign shows for "
             f"{args.needle_frames} frames; depth = start / (frames - needle frames)"]
    return write_json_and_markdown(
        args.out, args.name, {"settings": settings, "rows": rows, "predictions": predictions},
        markdown_grid(rows, notes, sign_kind_rows(predictions))
        + markdown_misreads(misread_rows(predictions)))


__all__ = ["Haystack", "make_haystack", "markdown_grid", "niah", "sign_kind_rows"]


if __name__ == "__main__":
    main()
