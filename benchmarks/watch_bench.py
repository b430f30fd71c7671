"""What watch conditions cost: the time one condition adds to each stored interval.

One memory ingests the same synthetic camera clip (``extend`` + ``flush``, synchronous) with
0, 1 and 4 watched conditions, the runs interleaved over ``--repeats`` rounds. It prints one
table: ingest seconds (median), the time inside the condition checks per interval and per
condition (measured where it happens), and the share of ingest time.

    python benchmarks/watch_bench.py --model tiny --frames 120                  # CPU
    python benchmarks/watch_bench.py --model videoxl-7b --frames 600 --ratio 16  # GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.log_bench import Clock, sync  # noqa: E402
from benchmarks.streams_bench import builder, camera_clip, table  # noqa: E402
from streamvxl import MemoryConfig, RuntimeConfig, VideoMemory  # noqa: E402
from streamvxl.runtime.runtime import Runtime  # noqa: E402

log = logging.getLogger("watch_bench")

CONDITIONS = ("a person is at the door", "a red car is parked", "the gate is open",
              "a sign shows a number")


def run(runtime, clip, config: MemoryConfig, conditions: int) -> tuple[float, float, int]:
    """Ingest seconds, seconds inside condition checks, intervals stored."""
    mem = VideoMemory.on(runtime, config, background=False)
    for text in CONDITIONS[:conditions]:
        mem.watch(text)
    with Clock(Runtime, "check_conditions") as checks:
        sync(runtime)
        t = time.perf_counter()
        mem.extend(clip, timestamps=[float(i) for i in range(len(clip))])
        mem.flush()
        sync(runtime)
        seconds = time.perf_counter() - t
    intervals = mem.stats().intervals_closed
    mem.close()
    return seconds, checks.seconds, intervals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("tiny", "videoxl-7b"), default="tiny")
    p.add_argument("--device", default=None)
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--size", default="240x320", help="frame HxW")
    p.add_argument("--ratio", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("streamvxl").setLevel(logging.WARNING)

    runtime = builder(args)(RuntimeConfig())
    height, width = (int(x) for x in args.size.split("x"))
    clip = camera_clip(args.frames, height, width, seed=0)
    config = MemoryConfig(ratio=args.ratio)
    run(runtime, clip[:48], config, 1)  # warm-up
    counts = (0, 1, 4)
    times: dict[int, list[float]] = {n: [] for n in counts}
    checks: dict[int, list[float]] = {n: [] for n in counts}
    intervals = 0
    for round_ in range(args.repeats):
        for n in counts:
            seconds, in_checks, intervals = run(runtime, clip, config, n)
            times[n].append(seconds)
            checks[n].append(in_checks)
            log.info("round %d, %d conditions: %.2f s (%.3f s in checks, %d intervals)",
                     round_ + 1, n, seconds, in_checks, intervals)
    rows = []
    for n in counts:
        med = statistics.median(times[n])
        per = statistics.median(checks[n]) / max(1, intervals * n) * 1000 if n else None
        rows.append({"conditions": n, "ingest s (median)": round(med, 3),
                     "frames/s": round(args.frames / med, 1),
                     "ms per interval per condition": round(per, 2) if per else "-",
                     "checks % of ingest": round(100 * statistics.median(checks[n]) / med, 2)
                     if n else "-"})
    title = (f"{args.model} on {runtime.model.device}, {runtime.model.dtype}, r={args.ratio}, "
             f"{args.frames} frames {args.size} ({intervals} intervals), {args.repeats} rounds "
             "interleaved; each check: one prefill of sink + the interval + the question")
    print(table(rows, title))
    if args.json:
        Path(args.json).write_text(json.dumps({"title": title, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
