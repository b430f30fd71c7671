"""A surveillance camera: an RTSP stream into a memory, alerts from watch conditions, summaries.

The camera is opened as a live source: read on its own thread, thinned to ``--fps``, and
reopened by itself when it drops (the first frame after an outage carries the gap, printed as
it comes). Every interval the memory stores is checked against each ``--watch`` condition; a
condition turning on or off is printed as an ALERT. Every ``--every`` seconds of the camera's
clock the memory is asked for a summary, printed with the time spans it drew on; a final one is
asked when the run ends (``--seconds`` on the camera's clock, or Ctrl-C).

    python -m examples.surveillance_camera rtsp://127.0.0.1:8554/cam \\
        [--watch "a person is at the door"] [--every 120] [--seconds 600] [--model CHECKPOINT]

Without ``--model`` the embedded default model, streamvxl-tiny, watches the camera.
"""

from __future__ import annotations

import argparse
import logging
import queue
import threading
from collections.abc import Sequence

from streamvxl import BoundaryConfig, Hub, MemoryConfig, StreamHandle, WatchEvent, open_source

SUMMARY = "What happened in the last few minutes?"
CONDITION = "a person is at the door"


def alert(event: WatchEvent) -> str:
    """One line for a condition turning on or off."""
    return (f"ALERT {event.condition} {event.state} at {event.t_start:.1f}-{event.t_end:.1f} s "
            f"(score {event.score:.2f})")


def summarise(camera: StreamHandle, when: str, max_new_tokens: int) -> None:
    """Ask for a summary and print it with the time spans and gaps it drew on."""
    answer = camera.ask(SUMMARY, max_new_tokens=max_new_tokens)
    spans = answer.intervals
    covered = f"{spans[0].t_start:.1f}-{spans[-1].t_end:.1f} s" if spans else "nothing yet"
    print(f"SUMMARY {when}: {answer.text or '(empty)'}")
    print(f"  from {len(spans)} spans covering {covered} "
          f"({sum(not s.compressed for s in spans)} open)"
          + "".join(f"; blind {g.start:.1f}-{g.end:.1f} s" for g in answer.gaps))


def main(argv: Sequence[str] | None = None, hub: Hub | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="the camera, e.g. rtsp://127.0.0.1:8554/cam")
    p.add_argument("--watch", action="append", help=f"a condition (repeatable; default "
                                                    f"{CONDITION!r})")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="alert when log p(yes) - log p(no) rises above it")
    p.add_argument("--hysteresis", type=float, default=1.0)
    p.add_argument("--fps", type=float, default=2.0, help="frames per second taken")
    p.add_argument("--every", type=float, default=120.0, help="summarise every N seconds")
    p.add_argument("--seconds", type=float, default=None, help="stop after N s (default: Ctrl-C)")
    p.add_argument("--max-frames", type=int, default=None,
                   help="longest interval, frames (default: the model's trained setting)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--model", default=None, help="a Video-XL checkpoint folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    hub = hub or (Hub.from_pretrained(args.model) if args.model else Hub.default())
    boundary = BoundaryConfig(max_frames=args.max_frames) if args.max_frames else None
    events: queue.Queue[WatchEvent] = queue.Queue()  # filled on the worker thread
    with hub:
        # a budget keeps a camera that runs for days in flat memory: the oldest intervals go
        camera = hub.stream("camera", MemoryConfig(token_budget=4096, boundary=boundary))
        for condition in args.watch or [CONDITION]:
            camera.watch(condition, events.put, threshold=args.threshold,
                         hysteresis=args.hysteresis)
        source = open_source(args.url, fps=args.fps)
        # a camera that is down sends no frame to stop on: the timer ends the run regardless
        timer = threading.Timer(args.seconds or 0.0, source.close)
        if args.seconds is not None:
            timer.start()
        next_summary = args.every
        try:
            with source:
                for frame in source:  # timestamps: seconds since the camera was opened
                    if args.seconds is not None and frame.timestamp >= args.seconds:
                        break
                    camera.push(frame)
                    if frame.gap is not None:
                        print(f"GAP camera offline {frame.gap.start:.1f}-{frame.gap.end:.1f} s "
                              f"({frame.gap.seconds:.1f} s: {frame.gap.cause})")
                    while not events.empty():
                        print(alert(events.get()))
                    if frame.timestamp >= next_summary:
                        summarise(camera, f"at {frame.timestamp:.1f} s", args.max_new_tokens)
                        while next_summary <= frame.timestamp:  # none for a period it missed
                            next_summary += args.every
        except KeyboardInterrupt:
            pass
        finally:
            timer.cancel()
        camera.flush()  # the last interval is stored and checked too
        while not events.empty():
            print(alert(events.get()))
        summarise(camera, "at the end", args.max_new_tokens)
        s = camera.stats()
        print(f"camera: {s.frames_seen} frames in memory, {s.frames_dropped} dropped, "
              f"{s.intervals_closed} intervals, {len(s.gaps)} gaps "
              f"({sum(g.seconds for g in s.gaps):.1f} s offline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
