"""A robot's camera: "when and where did I last see the red square?", asked of its memory.

The robot's view is a clip of the synthetic world (`streamvxl.world`): objects come into view
and leave, and a scene cut is the robot turning to face somewhere else. Its frames, stamped with
the robot's clock, stream into a `VideoMemory`; afterwards the memory is asked when and where
the robot last saw an object. Each answer is printed with the time spans of memory it drew on,
beside the ground truth the world knows exactly -- the model's words are not checked or fixed.

    python -m examples.robot_camera [--frames 96] [--seed 0] [--object "red square"]
                                    [--model CHECKPOINT]

Without ``--model`` the embedded default model, streamvxl-tiny, answers.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np

from streamvxl import MemoryConfig, VideoMemory
from streamvxl.world import COLOURS, SHAPES, Episode, WorldConfig, render, sample_episode

FPS = 2.0
"""Frames per second of the robot's camera: frame t is at t / FPS seconds."""
QUESTIONS = ("When did I last see the {name}?", "Where did I last see the {name}?")


def robot_episode(frames: int, seed: int, name: str) -> Episode:
    """A clip in which ``name`` (e.g. "red square") comes into view and leaves before the end,
    and no other object has its colour; deterministic in its arguments.

    Raises:
        ValueError: no such clip in 2000 draws (too few frames).
    """
    colour = name.split()[0]
    world = WorldConfig(num_frames=frames, fps=FPS, min_objects=3, max_objects=4,
                        cut_prob=0.7, sign_prob=0.0)
    for attempt in range(2000):
        episode = sample_episode(np.random.default_rng([seed, attempt]), world)
        target = [o for o in episode.objects if o.name == name]
        same_colour = [o for o in episode.objects if o.colour == colour]
        if len(target) == 1 == len(same_colour) and target[0].t_out < frames:
            return episode
    raise ValueError(f"no {frames}-frame clip showing a {name} in 2000 draws; use more frames")


def last_sighting(episode: Episode, name: str) -> tuple[float, str]:
    """When ``name`` was last visible (seconds), and that with where, from the episode itself."""
    (obj,) = [o for o in episode.objects if o.name == name]
    last = obj.t_out - 1  # the last frame showing it
    x, y = obj.centres(np.array([last]))[0]
    column = ("left", "centre", "right")[min(2, int(3 * x / episode.width))]
    row = ("top", "middle", "bottom")[min(2, int(3 * y / episode.height))]
    view = episode.scenes.index(episode.scene_at(last)) + 1
    return last / FPS, (f"visible {obj.t_in / FPS:.1f}-{last / FPS:.1f} s; last seen at "
                        f"{last / FPS:.1f} s, at x={x:.0f}, y={y:.0f} ({row} {column}) of view "
                        f"{view}/{len(episode.scenes)}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=96, help="clip length, frames at 2 fps")
    p.add_argument("--seed", type=int, default=0, help="selects the clip")
    p.add_argument("--object", default="red square",
                   help=f"'<colour> <shape>': colours {', '.join(COLOURS)}; shapes "
                        f"{', '.join(SHAPES)}")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--model", default=None, help="a Video-XL checkpoint folder")
    args = p.parse_args(argv)
    colour, _, shape = args.object.partition(" ")
    if colour not in COLOURS or shape not in SHAPES:
        p.error(f"--object must be '<colour> <shape>' of the world, got {args.object!r}")
    logging.basicConfig(level=logging.WARNING)

    episode = robot_episode(args.frames, args.seed, args.object)
    video, stamps = render(episode), episode.timestamps()  # (F, H, W, 3) uint8, (F,) seconds
    print(f"robot camera: {episode.num_frames} frames at {FPS:g} fps "
          f"({stamps[0]:.1f}-{stamps[-1]:.1f} s), views: {len(episode.scenes)}")
    for o in episode.objects:
        print(f"  {o.name}: in view {o.t_in / FPS:.1f}-{(o.t_out - 1) / FPS:.1f} s")

    last_seen, truth = last_sighting(episode, args.object)

    config = MemoryConfig()  # the interval cutting the model was trained with
    mem = (VideoMemory.from_pretrained(args.model, config=config) if args.model
           else VideoMemory(config=config))
    with mem:
        for frame, ts in zip(video, stamps, strict=True):
            mem.push(frame, timestamp=float(ts))  # returns at once; the worker takes it in
        mem.flush()  # end of the clip: everything in memory, the last interval closed
        for template in QUESTIONS:
            question = template.format(name=args.object)
            answer = mem.ask(question, max_new_tokens=args.max_new_tokens)
            # the span holding the last sighting is starred: was it in what the model read?
            spans = ", ".join(f"{s.t_start:.1f}-{s.t_end:.1f}"
                              + ("*" if s.t_start <= last_seen <= s.t_end else "")
                              + ("" if s.compressed else " (open)") for s in answer.intervals)
            print(f"Q: {question}")
            print(f"  A: {answer.text or '(empty)'}")
            print(f"  spans: {len(answer.intervals)} ({spans} s; * holds the last sighting)")
            print(f"  truth: {truth}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
