"""Command line: ``streamvxl demo | watch``.

``watch`` streams a source (file, lavfi pattern, RTSP/HTTP URL, camera) into a memory loaded from
a Video-XL checkpoint and asks questions as the video goes by. ``demo`` streams a synthetic
surveillance clip through the embedded default model and scores its answers (`streamvxl.demo`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from .config import MemoryConfig
from .errors import StreamVXLError
from .intervals.boundary import BoundaryConfig

log = logging.getLogger("streamvxl.cli")


def _watch(args: argparse.Namespace) -> int:
    from .sources import open_source
    from .video_memory import VideoMemory

    config = MemoryConfig(ratio=args.ratio, token_budget=args.budget,
                          boundary=BoundaryConfig(max_frames=args.max_frames))
    mem = VideoMemory.from_pretrained(args.model, config=config, device=args.device)
    questions = args.ask or ["What is happening in the video?"]
    next_ask: float | None = None  # set from the first frame: streams need not start at 0
    t0 = time.perf_counter()
    n = 0
    with open_source(args.source, fps=args.fps, max_frames=args.max_source_frames) as src:
        for frame in src:
            mem.push(frame)
            n += 1
            if n % 50 == 0:
                s = mem.stats()
                log.info("%d frames (%.1f fps), %d intervals, %d memory tokens", n,
                         n / (time.perf_counter() - t0), s.intervals_in_memory, s.memory_tokens)
            if args.every:
                if next_ask is None:
                    next_ask = frame.timestamp + args.every
                elif frame.timestamp >= next_ask:
                    _answer(mem, questions, frame.timestamp, args.max_new_tokens)
                    while next_ask <= frame.timestamp:
                        next_ask += args.every
    mem.flush()
    _answer(mem, questions, None, args.max_new_tokens)
    mem.close()
    return 0


def _answer(mem, questions: list[str], at: float | None, max_new_tokens: int) -> None:
    where = "end of stream" if at is None else f"t={at:.1f}s"
    for q in questions:
        a = mem.ask(q, max_new_tokens=max_new_tokens)
        spans = ", ".join(f"{s.t_start:.1f}-{s.t_end:.1f}s" for s in a.intervals[-3:])
        print(f"[{where}] Q: {q}\n    A: {a.text}\n    ({a.context_tokens} tokens in context; "
              f"latest spans {spans}; {a.timings.total * 1000:.0f} ms)")


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    argv = ["--seed", str(args.seed)] + (["--fast"] if args.fast else [])
    if args.frames is not None:
        argv += ["--frames", str(args.frames)]
    return demo.main(argv)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamvxl", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="stream a synthetic clip through the default model and "
                       "score its answers")
    d.add_argument("--frames", type=int, default=None, help="clip length in frames at 2 fps")
    d.add_argument("--seed", type=int, default=0, help="selects the clip and its questions")
    d.add_argument("--fast", action="store_true", help="a short clip (48 frames)")
    d.set_defaults(func=_demo)
    w = sub.add_parser("watch", help="stream a source into a memory and ask questions")
    w.add_argument("source", help="file, 'lavfi:<graph>', rtsp://..., /dev/video0")
    w.add_argument("--model", required=True, help="Video-XL checkpoint folder")
    w.add_argument("--fps", type=float, default=1.0, help="frames per second to sample")
    w.add_argument("--ask", action="append", help="question (repeatable)")
    w.add_argument("--every", type=float, default=0.0,
                   help="also ask every N seconds of video (0: only at the end)")
    w.add_argument("--ratio", type=int, default=8, help="compression ratio")
    w.add_argument("--budget", type=int, default=None, help="token budget of the memory")
    w.add_argument("--max-frames", type=int, default=64, help="longest interval, frames")
    w.add_argument("--max-new-tokens", type=int, default=64)
    w.add_argument("--max-source-frames", type=int, default=None)
    w.add_argument("--device", default=None, help="cuda, cpu (default: cuda if available)")
    w.set_defaults(func=_watch)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except StreamVXLError as e:
        print(f"streamvxl: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
