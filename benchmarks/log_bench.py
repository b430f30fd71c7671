"""What the interval log costs: its share of ingest time, bytes per hour, and reopening time.

One memory ingests the same synthetic camera clip (``extend`` + ``flush``, synchronous, nothing
dropped) without a log and with a log under each durability setting, the runs interleaved over
``--repeats`` rounds so drift hits them alike. It prints one table: ingest seconds (median),
the log's share of ingest time measured two ways (the worker's time in the log -- handing
records to the log's writer thread and waiting for the previous one -- and the difference from
the run without a log), how busy the writer thread was, bytes written per frame and per hour of a 1-fps
camera, and how long reopening the log takes (``VideoMemory.open``), and the model-identity
digest's one-time cost.

    python benchmarks/log_bench.py --model tiny --frames 240                 # CPU
    python benchmarks/log_bench.py --model videoxl-7b --frames 600 --ratio 16  # GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.streams_bench import builder, camera_clip, table  # noqa: E402
from streamvxl import MemoryConfig, RuntimeConfig, VideoMemory  # noqa: E402
from streamvxl.persist.durability import Durability  # noqa: E402
from streamvxl.persist.log import LogWriter, log_file  # noqa: E402
from streamvxl.runtime.durable import StreamLog  # noqa: E402

log = logging.getLogger("log_bench")

VARIANTS = {"no log": None, "fsync never": Durability("never"),
            "fsync batch (16 / 1 s)": Durability("batch"), "fsync every record": Durability()}


class Clock:
    """Seconds spent inside a method while the block runs."""

    def __init__(self, owner: type, name: str) -> None:
        self.seconds = 0.0
        self._owner, self._name = owner, name
        self._real = getattr(owner, name)

    def __enter__(self) -> Clock:
        clock, real = self, self._real

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                clock.seconds += time.perf_counter() - t

        setattr(self._owner, self._name, timed)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self._owner, self._name, self._real)


def sync(runtime) -> None:
    if runtime.model.device.type == "cuda":
        torch.cuda.synchronize(runtime.model.device)


def run(runtime, clip, config: MemoryConfig) -> tuple[float, float, float, VideoMemory]:
    """Ingest seconds, the worker's seconds in the log (handing records over, waiting for the
    previous one), the writer thread's seconds (serialising, checksumming, writing, fsync)."""
    mem = VideoMemory.on(runtime, config, background=False)
    with Clock(StreamLog, "interval") as worker, Clock(LogWriter, "append") as writer:
        sync(runtime)
        t = time.perf_counter()
        mem.extend(clip, timestamps=[float(i) for i in range(len(clip))])  # a 1-fps camera
        mem.flush()  # returns once the last record is written
        sync(runtime)
        seconds = time.perf_counter() - t
    return seconds, worker.seconds, writer.seconds, mem


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("tiny", "videoxl-7b"), default="tiny")
    p.add_argument("--device", default=None)
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--size", default="240x320", help="frame HxW")
    p.add_argument("--ratio", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=None, help="where logs are written (default: a temp dir)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("streamvxl").setLevel(logging.WARNING)

    build = builder(args)
    runtime = build(RuntimeConfig())
    height, width = (int(x) for x in args.size.split("x"))
    clip = camera_clip(args.frames, height, width, seed=0)
    t = time.perf_counter()
    identity = runtime.identity
    digest_s = time.perf_counter() - t
    log.info("model identity %s... in %.2f s (%s)", identity.digest[:12], digest_s,
             identity.summary)
    root = Path(args.dir or tempfile.mkdtemp(prefix="log_bench_"))
    run(runtime, clip[:48], MemoryConfig(ratio=args.ratio))[-1].close()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    handing: dict[str, list[float]] = {k: [] for k in VARIANTS}
    writing: dict[str, list[float]] = {k: [] for k in VARIANTS}
    sizes: dict[str, int] = {}
    intervals = 0
    reopen_s: list[float] = []
    for round_ in range(args.repeats):
        for name, durability in VARIANTS.items():
            directory = root / f"{round_}-{name.replace(' ', '_')}"
            config = MemoryConfig(ratio=args.ratio, log_dir=directory if durability else None,
                                  durability=durability or Durability())
            seconds, handed, written, mem = run(runtime, clip, config)
            intervals = mem.stats().intervals_closed
            mem.close()
            times[name].append(seconds)
            handing[name].append(handed)
            writing[name].append(written)
            if durability is not None:
                sizes[name] = log_file(directory).stat().st_size
                if name == "fsync never":
                    sync(runtime)
                    t = time.perf_counter()
                    VideoMemory.open(directory, runtime=runtime, background=False).close()
                    sync(runtime)
                    reopen_s.append(time.perf_counter() - t)
                shutil.rmtree(directory)
            log.info("round %d %-24s %.2f s (worker %.3f s in the log, writer thread %.3f s)",
                     round_ + 1, name, seconds, handed, written)
    base = statistics.median(times["no log"])
    rows = []
    for name in VARIANTS:
        med = statistics.median(times[name])
        row = {"log": name, "ingest s (median)": round(med, 3),
               "frames/s": round(args.frames / med, 1)}
        if name == "no log":
            row |= {"worker in log %": "-", "writer thread busy %": "-", "vs no log %": "-",
                    "bytes / frame": "-", "GB / hour at 1 fps": "-"}
        else:
            per_frame = sizes[name] / args.frames
            row |= {"worker in log %": round(100 * statistics.median(handing[name]) / med, 2),
                    "writer thread busy %": round(100 * statistics.median(writing[name]) / med,
                                                  2),
                    "vs no log %": round(100 * (med - base) / base, 2),
                    "bytes / frame": round(per_frame),
                    "GB / hour at 1 fps": round(per_frame * 3600 / 1e9, 3)}
        rows.append(row)
    title = (f"{args.model} on {runtime.model.device}, {runtime.model.dtype}, r={args.ratio}, "
             f"{args.frames} frames {args.size} ({intervals} intervals), {args.repeats} rounds "
             f"interleaved; reopen {statistics.median(reopen_s):.2f} s; identity digest "
             f"{digest_s:.2f} s once per runtime")
    print(table(rows, title))
    if args.json:
        Path(args.json).write_text(json.dumps({"title": title, "rows": rows}, indent=1))
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
