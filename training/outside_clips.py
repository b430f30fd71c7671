"""Clips from outside the renderer: what a new user tries first, asked in words of its own.

Every other evaluation draws its videos with `streamvxl.world.render` and asks in the world's
phrasings, so a model can do well there by learning that renderer and those sentences. These
clips are drawn by other code -- Pillow's `ImageDraw` shapes in Pillow's named colours (red is
(255, 0, 0) here, (230, 40, 40) in the world), Pillow's own font on the signs, gradients and
noise behind, frame sizes and aspect ratios the world never makes -- encoded to H.264 MP4 with
PyAV, and read back through the product's file source (`streamvxl.open_source`) into a
`VideoMemory`, as a user's file would be. Each clip's questions are written here by hand, and
scored with the world's tolerant matcher (`streamvxl.world.is_correct`): the answer checker,
not the wording.

The set is small and fixed (no tuning to it is possible without seeing its answers change here)
and the report gives every answer as it is::

    python -m training.outside_clips --out docs/results --name outside_clips

It writes ``<out>/<name>.json`` (every question and answer) and ``<name>.md`` (one table),
and keeps the MP4 files in ``--clips`` when given.

Letters: F frames, H, W frame size.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from streamvxl.preprocess import Fit
from streamvxl.world import QA, is_correct

log = logging.getLogger("training.outside_clips")

RGB = tuple[int, int, int]
PIL_COLOURS: dict[str, RGB] = {
    "red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 128, 0), "yellow": (255, 255, 0),
    "purple": (128, 0, 128), "orange": (255, 165, 0), "cyan": (0, 255, 255)}
"""Pillow's named colours (`PIL.ImageColor`), not the world's palette."""


@dataclass(frozen=True)
class Drawn:
    """A shape on screen for [t_in, t_out) seconds, moving from ``start`` to ``stop`` (its
    centre, as fractions of the frame)."""

    shape: str  # "square", "circle", "triangle"
    colour: str
    t_in: float
    t_out: float
    start: tuple[float, float]
    stop: tuple[float, float]
    size: float = 0.22  # side, as a fraction of the frame's smaller side


@dataclass(frozen=True)
class Board:
    """A white sign with ``text`` for [t_in, t_out) seconds."""

    text: str
    t_in: float
    t_out: float


@dataclass(frozen=True)
class Clip:
    name: str
    width: int
    height: int
    seconds: float
    background: str  # "solid:<colour>", "gradient", "noise"
    shapes: tuple[Drawn, ...] = ()
    boards: tuple[Board, ...] = ()
    fps: float = 2.0
    questions: tuple[tuple[str, str, tuple[str, ...], str], ...] = field(default=())
    """(question, answer, other accepted answers, kind of `is_correct`)."""

    def qas(self) -> list[QA]:
        return [QA("outside", self.name, q, a, (a, *more), (0, 1), kind)  # type: ignore[arg-type]
                for q, a, more, kind in self.questions]


CLIPS: tuple[Clip, ...] = (
    Clip("red_square_blue_circle", 160, 120, 12.0, "solid:green",
         (Drawn("square", "red", 1.0, 6.0, (0.3, 0.5), (0.3, 0.5)),
          Drawn("circle", "blue", 5.0, 11.0, (0.2, 0.4), (0.8, 0.6))),
         questions=(
             ("What colour was the square?", "red", (), "text"),
             ("What shape was the blue object?", "circle", (), "text"),
             ("Which showed up first, the square or the circle?", "square",
              ("red square", "the square"), "text"),
             ("Was there a yellow triangle?", "no", (), "yes_no"),
             ("What is on screen at the end of the clip?", "nothing", (), "absent"),
             ("How many shapes appeared?", "2", ("two",), "number"))),
    Clip("triangle_then_open_sign", 128, 96, 14.0, "gradient",
         (Drawn("triangle", "yellow", 0.0, 8.0, (0.15, 0.5), (0.85, 0.5)),
          Drawn("square", "orange", 11.0, 14.0, (0.5, 0.5), (0.5, 0.5))),
         (Board("OPEN", 8.5, 10.5),),
         questions=(
             ("What word was on the sign?", "open", (), "text"),
             ("What colour was the triangle?", "yellow", (), "text"),
             ("What can be seen right now?", "orange square", ("square", "orange"), "text"),
             ("Did a purple circle appear?", "no", (), "yes_no"),
             ("Is the yellow triangle still visible?", "no", (), "yes_no"))),
    Clip("three_at_once_wide", 200, 112, 15.0, "noise",
         (Drawn("circle", "purple", 0.0, 10.0, (0.25, 0.5), (0.25, 0.5)),
          Drawn("square", "orange", 3.0, 15.0, (0.6, 0.3), (0.6, 0.7)),
          Drawn("triangle", "cyan", 8.0, 13.0, (0.85, 0.7), (0.85, 0.3))),
         questions=(
             ("How many objects appeared?", "3", ("three",), "number"),
             ("Which object appeared last?", "cyan triangle", ("triangle", "cyan"), "text"),
             ("What colour was the circle?", "purple", (), "text"),
             ("Was there a cyan triangle?", "yes", (), "yes_no"),
             ("What is on screen at the end?", "orange square", ("square", "orange"),
              "text"))),
    Clip("number_sign_then_circle", 96, 96, 12.0, "solid:navy",
         (Drawn("circle", "red", 7.0, 12.0, (0.3, 0.3), (0.7, 0.7)),),
         (Board("42", 3.5, 5.5),),
         questions=(
             ("What number did the sign show?", "42", ("forty two",), "number"),
             ("What colour was the circle?", "red", (), "text"),
             ("Did a green square appear?", "no", (), "yes_no"),
             ("What appeared after the sign?", "red circle", ("circle", "a red circle"),
              "text"))),
    Clip("empty_at_the_end", 160, 90, 14.0, "solid:lightgray",
         (Drawn("triangle", "green", 1.0, 4.0, (0.3, 0.5), (0.3, 0.5)),
          Drawn("square", "blue", 5.0, 8.0, (0.7, 0.5), (0.6, 0.4))),
         questions=(
             ("What is on screen right now?", "nothing", (), "absent"),
             ("How many shapes appeared?", "2", ("two",), "number"),
             ("Which came first, the triangle or the square?", "triangle",
              ("green triangle", "the triangle"), "text"),
             ("What colour was the square?", "blue", (), "text"))),
)
"""The clips and their questions (answers from what each clip draws, by hand)."""


def _background(clip: Clip) -> np.ndarray:
    """(H, W, 3) uint8."""
    h, w = clip.height, clip.width
    if clip.background.startswith("solid:"):
        colour = Image.new("RGB", (1, 1), clip.background[6:]).getpixel((0, 0))
        return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()
    if clip.background == "gradient":
        ramp = np.linspace(60, 200, w, dtype=np.float32)[None, :, None]
        return np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8)
    if clip.background == "noise":
        rng = np.random.default_rng(len(clip.name))
        return rng.integers(90, 160, (h, w, 3), dtype=np.uint8)
    raise ValueError(f"unknown background {clip.background!r}")


def draw_frame(clip: Clip, t: float) -> np.ndarray:
    """The clip's picture at ``t`` seconds: (H, W, 3) uint8."""
    image = Image.fromarray(_background(clip))
    pen = ImageDraw.Draw(image)
    side = min(clip.width, clip.height)
    for s in clip.shapes:
        if not s.t_in <= t < s.t_out:
            continue
        k = 0.0 if s.t_out - s.t_in <= 0 else (t - s.t_in) / (s.t_out - s.t_in)
        cx = (s.start[0] + k * (s.stop[0] - s.start[0])) * clip.width
        cy = (s.start[1] + k * (s.stop[1] - s.start[1])) * clip.height
        r = s.size * side / 2
        box = (cx - r, cy - r, cx + r, cy + r)
        fill = PIL_COLOURS[s.colour]
        if s.shape == "square":
            pen.rectangle(box, fill=fill)
        elif s.shape == "circle":
            pen.ellipse(box, fill=fill)
        elif s.shape == "triangle":
            pen.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
        else:
            raise ValueError(f"unknown shape {s.shape!r}")
    for b in clip.boards:
        if b.t_in <= t < b.t_out:
            font = ImageFont.load_default(size=max(10, side // 5))
            left, top, right, bottom = pen.textbbox((0, 0), b.text, font=font)
            tw, th = right - left, bottom - top
            x, y = (clip.width - tw) / 2, (clip.height - th) / 2
            pen.rectangle((x - 4, y - 4, x + tw + 4, y + th + 4), fill="white")
            pen.text((x - left, y - top), b.text, fill="black", font=font)
    return np.asarray(image, dtype=np.uint8)


def write_mp4(clip: Clip, path: Path) -> Path:
    """The clip as H.264 (yuv420p) MP4 at its fps, through PyAV."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                rate=int(clip.fps))
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
        for i in range(int(round(clip.seconds * clip.fps))):
            frame = av.VideoFrame.from_ndarray(draw_frame(clip, i / clip.fps), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def memories(model: str | Path | None = None, fit: Fit | None = None):
    """A function making a fresh `VideoMemory` (default `MemoryConfig`, as ``VideoMemory()``)
    per clip over one runtime: the embedded streamvxl-tiny, or ``model`` (a delta or a
    model folder), loaded once; ``fit``: how frames that are not square reach it
    (`streamvxl.preprocess.Preprocessor.fit`; None: as the weights record)."""
    from dataclasses import replace

    from streamvxl import MemoryConfig, VideoMemory
    from streamvxl.intervals import BoundaryConfig
    from streamvxl.runtime import Runtime

    if model is None:
        runtime = Runtime.default()
    else:
        from training.evaluate import load_model_folder

        net, tokenizer, preprocess = load_model_folder(model)
        boundary = None
        if str(model).endswith(".safetensors"):  # a delta names the cutting it learned
            from streamvxl.model.default import trained_settings

            fields = trained_settings(model).get("boundary")
            boundary = BoundaryConfig(**fields) if fields else None
        runtime = Runtime(net, tokenizer, preprocess, trained_boundary=boundary)
    if fit is not None and runtime.preprocessor is not None:
        runtime.preprocessor = replace(runtime.preprocessor, fit=fit)
    return lambda: VideoMemory.on(runtime, MemoryConfig())


def ask_clip(clip: Clip, path: Path, memory_factory, max_new_tokens: int = 16
             ) -> list[dict[str, Any]]:
    """Stream the file into a fresh memory through `open_source` and ask every question."""
    from streamvxl import open_source

    with memory_factory() as mem:
        frames = 0
        for frame in open_source(str(path), fps=clip.fps):
            mem.push(frame)
            frames += 1
        mem.flush()  # the end of the file: the backlog, then the last interval
        rows = []
        for qa in clip.qas():
            answer = mem.ask(qa.question, max_new_tokens=max_new_tokens)
            rows.append({"clip": clip.name, "size": f"{clip.width}x{clip.height}",
                         "frames": frames, "question": qa.question, "truth": qa.answer,
                         "kind": qa.kind, "answer": answer.text,
                         "correct": bool(is_correct(answer.text, qa))})
            log.info("%s: %r -> %r (%s)", clip.name, qa.question, answer.text,
                     "right" if rows[-1]["correct"] else "wrong")
    return rows


def markdown(rows: list[dict[str, Any]], model: str) -> str:
    right = sum(r["correct"] for r in rows)
    out = [f"# Clips from outside the renderer ({model})", "",
           f"`python -m training.outside_clips` -- {right} / {len(rows)} answers right "
           "(PIL drawing, H.264 through PyAV, read back by `open_source`; questions written "
           "by hand; the world's answer checker).", "",
           "| clip | size | question | truth | answer | right |", "|---|---|---|---|---|---|"]
    for r in rows:
        answer = r["answer"].replace("|", "/").replace("\n", " ")
        out.append(f"| {r['clip']} | {r['size']} | {r['question']} | {r['truth']} | "
                   f"{answer} | {'yes' if r['correct'] else 'no'} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None,
                   help="a streamvxl-tiny delta or model folder (default: the embedded model)")
    p.add_argument("--clips", type=Path, default=None, help="keep the MP4 files here")
    p.add_argument("--out", type=Path, default=None, help="write <out>/<name>.json and .md")
    p.add_argument("--name", default="outside_clips")
    p.add_argument("--fit", choices=get_args(Fit),
                   help="how frames that are not square reach the model (default: as it was "
                        "trained)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    factory = memories(args.model, args.fit)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.clips or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for k, clip in enumerate(CLIPS, 1):
            path = write_mp4(clip, folder / f"{clip.name}.mp4")
            rows += ask_clip(clip, path, factory)
            log.info("[%d/%d] %s (%.0f s)", k, len(CLIPS), clip.name, time.perf_counter() - t0)
    text = markdown(rows, (args.model or "the embedded streamvxl-tiny")
                    + (f", frames fit by {args.fit}" if args.fit else ""))
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
        (args.out / f"{args.name}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
