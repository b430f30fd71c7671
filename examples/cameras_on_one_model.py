"""Several cameras on one model: a `Hub`, one stream per camera, questions while they stream.

Each camera is read on its own thread and pushed into its own stream as a live source (a full
queue drops its oldest frame rather than fall behind); the one worker thread runs the vision
tower on all cameras' frames together and compresses their intervals in turn. Every few
seconds each camera is asked what it shows, and the answer is printed as it decodes.

    python -m examples.cameras_on_one_model [--seconds 20] [--model CHECKPOINT]

Without ``--model`` the embedded default model, streamvxl-tiny, serves all cameras.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Sequence

from streamvxl import Hub, MemoryConfig, StreamHandle, open_source

CAMERAS = {
    "gate": "lavfi:testsrc=size=320x240:rate=10",
    "dock": "lavfi:smptebars=size=320x240:rate=10",
    "yard": "lavfi:mandelbrot=size=320x240:rate=10",
}
"""Stand-ins for live cameras: FFmpeg test patterns read in real time."""


def watch(stream: StreamHandle, uri: str, fps: float, stop: threading.Event) -> None:
    """Push a camera's frames into its stream until ``stop``."""
    with open_source(uri, fps=fps, realtime=True) as source:
        for frame in source:
            if stop.is_set():
                break
            stream.push(frame)


def main(argv: Sequence[str] | None = None, hub: Hub | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--fps", type=float, default=2.0, help="frames per second taken per camera")
    p.add_argument("--every", type=float, default=5.0, help="ask each camera every N seconds")
    p.add_argument("--model", default=None, help="a Video-XL checkpoint folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    hub = hub or (Hub.from_pretrained(args.model) if args.model else Hub.default())
    stop = threading.Event()
    with hub:
        streams = {name: hub.stream(name, MemoryConfig(token_budget=4096)) for name in CAMERAS}
        readers = [threading.Thread(target=watch, args=(streams[n], uri, args.fps, stop))
                   for n, uri in CAMERAS.items()]
        for r in readers:
            r.start()
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            time.sleep(min(args.every, max(0.0, end - time.monotonic())))
            for name, stream in streams.items():
                print(f"[{name}] ", end="", flush=True)
                for piece in stream.ask_stream("What is shown?", max_new_tokens=16):
                    print(piece, end="", flush=True)
                print()
        stop.set()
        for r in readers:
            r.join()
        for name, stream in streams.items():
            s = stream.stats()
            print(f"{name}: {s.frames_seen} frames in memory, {s.frames_dropped} dropped, "
                  f"{s.intervals_closed} intervals, {s.lag:.1f} s behind")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
