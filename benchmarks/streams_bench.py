"""Live streams on one runtime: sustained ingest, drops, lag, push and answer latency under load.

N synthetic cameras push frames in real time (one producer thread each, wall-clock timestamps,
live frames: a full queue drops its oldest frame) into one `Hub` while questions arrive at a
set rate (Poisson) on random cameras. After a warm-up, it measures for T seconds and prints
one table: frames/s sustained, frames dropped, lag (newest frame pushed minus newest in memory,
sampled twice a second per stream) p50/p99, ``push`` latency p50/p99/max (split by what the
worker was doing at that moment: compressing an interval or not), ask time to first token
p50/p95 (from the call, waiting included), and device memory (flat: min and max after warm-up).

    python benchmarks/streams_bench.py --model tiny --streams 4 --seconds 60      # CPU
    python benchmarks/streams_bench.py --model tiny --find-max 2,4,6,8 --seconds 60
    python benchmarks/streams_bench.py --model tiny --ingest                      # idle vs busy
    python benchmarks/streams_bench.py --model videoxl-7b --streams 100 --seconds 300  # GPU

``--ingest`` measures the most frames/s one memory takes in (``extend``, nothing dropped) on
an idle machine and beside another process that keeps one core busy, with the runtime's CPU
threads (``RuntimeConfig.cpu_threads=None``) and with torch's default, side by side.
``--find-max`` runs the live load for each stream count and names those that held: no frame
dropped, lag p99 <= ``--max-lag`` seconds and time-to-first-token p95 <= ``--max-ttft`` ms. Every section's rows come from this one
run; ``--json`` writes them too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamvxl import (  # noqa: E402
    BoundaryConfig,
    ClosedError,
    Frame,
    Hub,
    MemoryConfig,
    Runtime,
    RuntimeConfig,
    VideoMemory,
)

log = logging.getLogger("streams_bench")

QUESTIONS = ("What is happening in the video?", "Did anything new appear?",
             "What colour is the largest object?", "How many objects are there?")


# -- synthetic cameras ---------------------------------------------------------------------------
def camera_clip(n: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """``n`` frames of a camera: scenes of 6-20 frames (a random picture each) with small
    per-frame noise and a square that moves, so intervals are cut by content as well as by
    length."""
    rng = np.random.default_rng(seed)
    frames: list[np.ndarray] = []
    while len(frames) < n:
        base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for k in range(int(rng.integers(6, 21))):
            img = base.copy()
            s = max(2, height // 6)
            y = int((k * 7) % max(1, height - s))
            x = int((k * 11) % max(1, width - s))
            img[y:y + s, x:x + s] = 255
            noise = rng.integers(-4, 5, (height, width, 1), dtype=np.int16)
            frames.append(np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return frames[:n]


# -- measurement ---------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class LiveResult:
    """One live run: N streams for T seconds."""

    streams: int
    fps: float
    seconds: float
    pushed: int = 0
    seen: int = 0
    dropped: int = 0
    lag: list[float] = field(default_factory=list)
    push_ms: list[float] = field(default_factory=list)
    push_ms_compressing: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    wait_ms: list[float] = field(default_factory=list)
    prefill_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    ask_errors: int = 0
    intervals: int = 0
    memory_gib: list[float] = field(default_factory=list)
    peak_gib: float = 0.0

    def held(self, max_lag: float, max_ttft_ms: float) -> bool:
        """No frame dropped, lag p99 and time to first token p95 within their limits."""
        ttft = pct(self.ttft_ms, 95) if self.ttft_ms else 0.0
        return self.dropped == 0 and pct(self.lag, 99) <= max_lag and ttft <= max_ttft_ms

    def row(self) -> dict:
        return {
            "streams": self.streams, "fps each": self.fps, "seconds": self.seconds,
            "frames/s in": round(self.seen / self.seconds, 1),
            "pushed": self.pushed, "dropped": self.dropped,
            "lag p50 s": round(pct(self.lag, 50), 2), "lag p99 s": round(pct(self.lag, 99), 2),
            "push p50 ms": round(pct(self.push_ms, 50), 3),
            "push p99 ms": round(pct(self.push_ms, 99), 3),
            "push max ms": round(max(self.push_ms, default=float("nan")), 2),
            "push p99 ms, interval closing": round(pct(self.push_ms_compressing, 99), 3),
            "asks": len(self.ttft_ms), "ask errors": self.ask_errors,
            "TTFT p50 ms": round(pct(self.ttft_ms, 50), 1),
            "TTFT p95 ms": round(pct(self.ttft_ms, 95), 1),
            "  waiting p95 ms": round(pct(self.wait_ms, 95), 1),
            "  prefill p95 ms": round(pct(self.prefill_ms, 95), 1),
            "answer p95 ms": round(pct(self.answer_ms, 95), 1),
            "intervals": self.intervals,
            "memory GiB min": round(min(self.memory_gib, default=float("nan")), 3),
            "memory GiB max": round(max(self.memory_gib, default=float("nan")), 3),
            "peak GiB": round(self.peak_gib, 3),
        }


def device_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**30
    with open(f"/proc/{os.getpid()}/status") as fh:  # resident set: the CPU's "device memory"
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def live(runtime: Runtime, config: MemoryConfig, n_streams: int, fps: float, seconds: float,
         warmup: float, ask_rate: float, max_new_tokens: int, size: tuple[int, int],
         seed: int = 0) -> LiveResult:
    """``n_streams`` real-time cameras on one hub with questions at ``ask_rate`` per second."""
    device = runtime.model.device
    res = LiveResult(n_streams, fps, seconds)
    clip_len = 240
    clips = [camera_clip(clip_len, *size, seed=seed * 1000 + k) for k in range(min(n_streams, 8))]
    hub = Hub(runtime)
    scheduler = hub._scheduler  # what the worker is doing, for the push-latency split
    streams = [hub.stream(f"cam{k}", config) for k in range(n_streams)]
    start = time.monotonic()
    measuring = threading.Event()
    stop = threading.Event()
    lock = threading.Lock()

    def produce(k: int) -> None:
        clip = clips[k % len(clips)]
        offset = (k * 37) % clip_len
        i = 0
        phase = (k / n_streams) / fps  # cameras do not all tick at once
        while not stop.is_set():
            due = start + phase + i / fps
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if stop.is_set():
                break
            image = clip[(offset + i) % clip_len]
            frame = Frame(image, time.monotonic() - start, i, live=True)
            compressing = scheduler.doing == "compress"
            t0 = time.perf_counter()
            streams[k].push(frame)
            ms = 1000 * (time.perf_counter() - t0)
            if measuring.is_set():
                with lock:
                    res.push_ms.append(ms)
                    if compressing:
                        res.push_ms_compressing.append(ms)
            i += 1

    def ask_one(stream) -> None:
        try:
            a = stream.ask(random.choice(QUESTIONS), max_new_tokens=max_new_tokens)
        except Exception as e:  # noqa: BLE001 - counted; a benchmark reports, it does not stop
            log.warning("ask failed: %r", e)
            with lock:
                res.ask_errors += 1
            return
        if measuring.is_set():
            with lock:
                res.ttft_ms.append(1000 * a.timings.first_token)
                res.wait_ms.append(1000 * a.timings.wait)
                res.prefill_ms.append(1000 * a.timings.prefill)
                res.answer_ms.append(1000 * a.timings.total)

    def asker() -> None:
        rng = random.Random(seed)
        with ThreadPoolExecutor(8, thread_name_prefix="asker") as pool:
            while not stop.is_set() and ask_rate > 0:
                time.sleep(rng.expovariate(ask_rate))
                if not stop.is_set():
                    pool.submit(ask_one, rng.choice(streams))

    def monitor() -> None:
        while not stop.is_set():
            time.sleep(0.5)
            if measuring.is_set():
                lags = [s.stats().lag for s in streams]
                gib = device_gib(device)
                with lock:
                    res.lag += lags
                    res.memory_gib.append(gib)

    threads = [threading.Thread(target=produce, args=(k,), daemon=True)
               for k in range(n_streams)]
    threads += [threading.Thread(target=asker, daemon=True),
                threading.Thread(target=monitor, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(warmup)
    before = [s.stats() for s in streams]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    measuring.set()
    log.info("%d streams: warm-up done, measuring %.0f s", n_streams, seconds)
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        time.sleep(min(10.0, max(0.0, t_end - time.monotonic())))
        s = [x.stats() for x in streams]
        log.info("  %.0f s left: %d in memory, %d dropped, lag max %.1f s",
                 t_end - time.monotonic(), sum(x.frames_seen for x in s),
                 sum(x.frames_dropped for x in s), max(x.lag for x in s))
    after = [s.stats() for s in streams]
    measuring.clear()
    stop.set()
    for t in threads:
        t.join(60)
    res.pushed = sum(a.frames_pushed - b.frames_pushed for a, b in zip(after, before, strict=True))
    res.seen = sum(a.frames_seen - b.frames_seen for a, b in zip(after, before, strict=True))
    res.dropped = sum(a.frames_dropped - b.frames_dropped for a, b in zip(after, before, strict=True))
    res.intervals = sum(a.intervals_closed - b.intervals_closed for a, b in zip(after, before, strict=True))
    if device.type == "cuda":
        res.peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        res.peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    hub.close(wait=False)
    return res


def ingest_rate(runtime_config: RuntimeConfig, build, config: MemoryConfig, seconds: float,
                size: tuple[int, int]) -> float:
    """Frames/s one memory compresses when fed as fast as it takes them (block: nothing
    dropped), counted in closed, compressed intervals."""
    runtime = build(runtime_config)
    clip = camera_clip(4000, *size, seed=7)
    mem = VideoMemory.on(runtime, config)
    mem.extend(clip[:32])  # warm-up
    mem.wait()

    def compressed() -> int:
        s = mem.stats()
        return s.frames_seen - s.open_frames - s.frames_pending

    def feed() -> None:
        with contextlib.suppress(ClosedError):  # closed under it when the time is up
            mem.extend(clip[32:])

    start = compressed()
    feeder = threading.Thread(target=feed, daemon=True)
    t0 = time.perf_counter()
    feeder.start()
    time.sleep(seconds)
    rate = (compressed() - start) / (time.perf_counter() - t0)
    mem.close(wait=False)
    feeder.join(60)
    return rate


class BusyCore:
    """Another process keeping one core busy (a pure-Python spin loop)."""

    def __enter__(self) -> BusyCore:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


# -- table ---------------------------------------------------------------------------------------
def table(rows: list[dict], title: str) -> str:
    keys = list(rows[0])
    width = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    lines = [title, " | ".join(k.ljust(width[k]) for k in keys),
             "-+-".join("-" * width[k] for k in keys)]
    lines += [" | ".join(str(r[k]).ljust(width[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def transpose(rows: list[dict], label: str) -> list[dict]:
    """One row per measure, one column per run (wide tables read better on their side)."""
    return [{"measure": k, **{f"{label}={r[label]}": r[k] for r in rows}} for k in rows[0]
            if k != label]


# -- models --------------------------------------------------------------------------------------
def builder(args: argparse.Namespace):
    """A function RuntimeConfig -> Runtime for ``--model`` (the model is built once)."""
    if args.model == "tiny":
        from streamvxl.model.default import load_default_model, trained_settings

        model, tokenizer = load_default_model(device=args.device or "cpu")
        boundary = BoundaryConfig(**trained_settings()["boundary"])
        return lambda cfg: Runtime(model, tokenizer, config=cfg, trained_boundary=boundary)
    from streamvxl.model.shapes import random_model, videoxl_7b
    from streamvxl.testing import make_tokenizer

    device = torch.device(args.device or "cuda")
    model = random_model(*videoxl_7b(), device, torch.bfloat16)
    tokenizer = make_tokenizer()
    return lambda cfg: Runtime(model, tokenizer, config=cfg)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("tiny", "videoxl-7b"), default="tiny")
    p.add_argument("--device", default=None, help="default: cpu for tiny, cuda for videoxl-7b")
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--fps", type=float, default=1.0, help="frames per second of each camera")
    p.add_argument("--seconds", type=float, default=60.0, help="measured time per live run")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds of load before measuring")
    p.add_argument("--ask-rate", type=float, default=1.0, help="questions per second, all cameras")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--ratio", type=int, default=16)
    p.add_argument("--budget", type=int, default=4096, help="token budget of each stream")
    p.add_argument("--max-frames", type=int, default=None,
                   help="longest interval (default: the model's trained boundary, else 20)")
    p.add_argument("--queue", type=int, default=64, help="queue_frames of each stream")
    p.add_argument("--vision-batch", type=int, default=None,
                   help="frames per vision forward (default 16 on the CPU, 32 on a GPU)")
    p.add_argument("--find-max", default="", help="comma-separated stream counts to try")
    p.add_argument("--max-lag", type=float, default=10.0, help="lag p99 a held load stays under")
    p.add_argument("--max-ttft", type=float, default=250.0,
                   help="time-to-first-token p95 (ms) a held load stays under")
    p.add_argument("--ingest", action="store_true",
                   help="ingest rate idle vs one busy core, runtime threads vs torch default")
    p.add_argument("--ingest-seconds", type=float, default=20.0)
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("streamvxl.runtime.hub").setLevel(logging.WARNING)

    t0 = time.perf_counter()
    build = builder(args)
    probe = build(RuntimeConfig(cpu_threads=0))
    model = probe.model
    gpu = model.device.type == "cuda"
    size = (360, 640) if gpu else (model.image_size, model.image_size)
    vision_batch = args.vision_batch or (32 if gpu else 16)
    boundary = None
    if args.max_frames is not None or probe.trained_boundary is None:
        boundary = BoundaryConfig(max_frames=args.max_frames or 20)
    config = MemoryConfig(ratio=args.ratio, token_budget=args.budget, boundary=boundary,
                          queue_frames=args.queue)
    device = torch.cuda.get_device_name(model.device) if gpu else \
        f"CPU ({len(os.sched_getaffinity(0))} cores)"
    header = (f"{args.model} on {device}, torch {torch.__version__}, {model.dtype}; r={args.ratio}, "
              f"budget {args.budget} tokens/stream, intervals {probe.settings(config).boundary}, "
              f"vision batch {vision_batch}; model ready in {time.perf_counter() - t0:.0f} s")
    log.info(header)
    out: dict = {"setup": header, "argv": sys.argv[1:]}
    printed: list[str] = [header]

    if args.ingest:
        rows = []
        for label, threads in (("runtime's choice (cpu_threads=None)", None),
                               ("torch default (cpu_threads=0)", 0)):
            cfg = RuntimeConfig(vision_batch=vision_batch, cpu_threads=threads)
            torch.set_num_threads(len(os.sched_getaffinity(0)))  # torch's default, every run
            idle = ingest_rate(cfg, build, config, args.ingest_seconds, size)
            torch.set_num_threads(len(os.sched_getaffinity(0)))
            with BusyCore():
                busy = ingest_rate(cfg, build, config, args.ingest_seconds, size)
            rows.append({"threads": label, "torch threads": torch.get_num_threads(),
                         "idle frames/s": round(idle, 2), "one core busy frames/s": round(busy, 2),
                         "busy / idle": round(busy / idle, 3)})
            log.info("%s", rows[-1])
        printed.append(table(rows, "ingest: one memory fed as fast as it takes frames"))
        out["ingest"] = rows

    counts = [int(n) for n in args.find_max.split(",") if n] or [args.streams]
    runs = []
    runtime = build(RuntimeConfig(vision_batch=vision_batch))
    for n in counts:
        r = live(runtime, config, n, args.fps, args.seconds, args.warmup, args.ask_rate,
                 args.max_new_tokens, size)
        runs.append(r)
        log.info("%d streams: %s", n, r.row())
        if gpu:
            torch.cuda.empty_cache()
    rows = [r.row() for r in runs]
    printed.append(table(transpose(rows, "streams"),
                         f"live: cameras at {args.fps:g} fps, questions at {args.ask_rate:g}/s, "
                         f"{args.seconds:g} s measured after {args.warmup:g} s warm-up"))
    held = [r.streams for r in runs if r.held(args.max_lag, args.max_ttft)]
    printed.append(f"held (0 drops, lag p99 <= {args.max_lag:g} s, TTFT p95 <= "
                   f"{args.max_ttft:g} ms): {held or 'none of those tried'}")
    out["live"] = rows
    out["held"] = held
    print("\n\n".join(printed))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
