"""``streamvxl watch SOURCE``: a source into a memory, a live progress line, questions any time.

Frames go from the source (a file, a lavfi graph, a camera or a network stream, reconnected when
it drops) into a memory -- the embedded default model unless ``--model`` names a checkpoint.
A progress line on stderr shows frames, rates, intervals, lag, drops, reconnects and the
source's state; every line typed on stdin is asked, its answer printed as it decodes; ``--ask``
questions are asked every ``--every`` seconds of video and at the end.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from .config import MemoryConfig
from .intervals.boundary import BoundaryConfig

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 1.0
"""How often the progress line is redrawn (a terminal) or written (a log, every 10th time)."""


def add_arguments(w: argparse.ArgumentParser) -> None:
    w.add_argument("source", help="file, 'lavfi:<graph>', rtsp://..., /dev/video0")
    w.add_argument("--model", default=None,
                   help="a Video-XL checkpoint folder (default: the embedded streamvxl-tiny)")
    w.add_argument("--fps", type=float, default=1.0, help="frames per second to sample")
    w.add_argument("--ask", action="append", help="question asked --every N s and at the end")
    w.add_argument("--every", type=float, default=0.0,
                   help="ask the --ask questions every N seconds of video (0: only at the end)")
    w.add_argument("--ratio", type=int, default=8, help="compression ratio")
    w.add_argument("--budget", type=int, default=None, help="token budget of the memory")
    w.add_argument("--max-frames", type=int, default=None,
                   help="longest interval, frames (default: the model's trained setting)")
    w.add_argument("--max-new-tokens", type=int, default=64)
    w.add_argument("--max-source-frames", type=int, default=None)
    w.add_argument("--seconds", type=float, default=None,
                   help="stop after this many seconds (a live source runs until stopped)")
    w.add_argument("--device", default=None, help="cuda, cpu (default: cuda if available)")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None,
        stdin: TextIO | None = None) -> int:
    """Run ``watch`` (``out``, ``err``, ``stdin``: the process's, unless given)."""
    from .sources import open_source
    from .video_memory import VideoMemory

    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    boundary = BoundaryConfig(max_frames=args.max_frames) if args.max_frames else None
    config = MemoryConfig(ratio=args.ratio, token_budget=args.budget, boundary=boundary)
    if args.model:
        mem = VideoMemory.from_pretrained(args.model, config=config, device=args.device)
    else:
        from .runtime.runtime import Runtime

        mem = VideoMemory.on(Runtime.default(device=args.device), config)
    src = open_source(args.source, fps=args.fps, max_frames=args.max_source_frames)
    stop = threading.Event()
    printer = threading.Lock()
    questions = args.ask or []
    next_ask: float | None = None  # set from the first frame: streams need not start at 0
    progress = threading.Thread(target=_progress, args=(mem, src, stop, err, printer),
                                daemon=True)
    typed = threading.Thread(target=_typed_questions,
                             args=(mem, stdin, out, printer, args.max_new_tokens),
                             daemon=True)
    progress.start()
    typed.start()
    timer = threading.Timer(args.seconds or 0.0, src.close)
    timer.daemon = True
    if args.seconds is not None:
        timer.start()
    restore_sigint = _close_on_sigint(src)
    try:
        with src:
            for frame in src:
                mem.push(frame)
                if args.every and questions:
                    if next_ask is None:
                        next_ask = frame.timestamp + args.every
                    elif frame.timestamp >= next_ask:
                        _answer(mem, questions, frame.timestamp, args.max_new_tokens, out,
                                printer)
                        while next_ask <= frame.timestamp:
                            next_ask += args.every
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        restore_sigint()
        timer.cancel()
        stop.set()
        progress.join()
    mem.flush()
    _answer(mem, questions or ["What is happening in the video?"], None, args.max_new_tokens,
            out, printer)
    err.write(_line(mem, src) + "\n")
    mem.close()
    return 0


def _close_on_sigint(src) -> Callable[[], None]:
    """Make Ctrl-C end the stream as ``--seconds`` does: the source closes, the loop ends, the
    memory flushes and answers. A KeyboardInterrupt raised wherever the main thread happens to
    be -- inside ``push``, between queueing a frame and counting it -- could leave the flush
    waiting forever. The source is closed from another thread (the handler may run while the
    main thread is inside the source); a second Ctrl-C raises KeyboardInterrupt, as before, for a
    source whose close does not end the loop. Returns the function
    that puts the previous handler back (a no-op off the main thread, where none is set)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    pressed = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if pressed.is_set():
            raise KeyboardInterrupt
        pressed.set()
        log.info("interrupted: closing the source (Ctrl-C again to interrupt)")
        threading.Thread(target=src.close, name="watch-sigint", daemon=True).start()

    previous = signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)


def _answer(mem, questions: list[str], at: float | None, max_new_tokens: int, out: TextIO,
            printer: threading.Lock) -> None:
    where = "end of stream" if at is None else f"t={at:.1f}s"
    for q in questions:
        a = mem.ask(q, max_new_tokens=max_new_tokens)
        spans = ", ".join(f"{s.t_start:.1f}-{s.t_end:.1f}s" for s in a.intervals[-3:])
        with printer:
            out.write(f"[{where}] Q: {q}\n    A: {a.text}\n    ({a.context_tokens} tokens in "
                      f"context; latest spans {spans}; {a.timings.total * 1000:.0f} ms)\n")
            out.flush()


def _typed_questions(mem, stdin: TextIO | None, out: TextIO, printer: threading.Lock,
                     max_new_tokens: int) -> None:
    """Ask every line typed on stdin, printing the answer as it decodes."""
    try:
        for line in stdin or ():
            question = line.strip()
            if not question:
                continue
            stream = mem.ask_stream(question, max_new_tokens=max_new_tokens)
            with printer:
                out.write(f"[asked] Q: {question}\n    A: ")
                for piece in stream:
                    out.write(piece)
                    out.flush()
                out.write("\n")
                out.flush()
    except Exception as e:  # noqa: BLE001 - no usable stdin (or the memory closed): stop asking
        log.debug("stdin questions stopped: %r", e)


def _progress(mem, src, stop: threading.Event, err: TextIO, printer: threading.Lock) -> None:
    tty = getattr(err, "isatty", lambda: False)()
    tick = 0
    while not stop.wait(PROGRESS_SECONDS):
        tick += 1
        line = _line(mem, src)
        with printer:
            if tty:
                err.write("\r" + line + "\x1b[K")
                err.flush()
            elif tick % 10 == 0:
                log.info("%s", line)
    if tty:
        err.write("\n")


def _line(mem, src) -> str:
    s = mem.stats()
    source = src.stats()
    return (f"[{source.state}] {s.frames_seen} frames in memory ({source.fps:.1f} fps), "
            f"{s.intervals_closed} intervals, lag {s.lag:.1f} s, dropped "
            f"{s.frames_dropped + source.frames_dropped}, reconnects {source.reconnects}, "
            f"gaps {len(s.gaps)} ({sum(g.seconds for g in s.gaps):.0f} s)")


__all__ = ["add_arguments", "run"]
