"""Cameras on Ray Serve shards under live load: the most cameras held, time to first token
through Serve, memory per shard (per GPU), and a failover -- one run.

``streamvxl serve --ray`` as it runs in production: a `ClusterService` front deploys
``--shards`` shard replicas (one model each; ``--gpus-per-shard 1``: one per GPU), places every
camera on one of them by its name (rendezvous hashing), and each replica reads its cameras'
sources itself. The cameras are the streams benchmark's producers: its `camera_clip` pictures
(scenes of 6-20 frames, noise, a moving square), written once as H.264 files at 1 fps and read
by the replicas in real time (``realtime = true``: a live camera, whose full queue drops its
oldest frame, counted).

For each camera count in ``--cameras``, a fresh service (fresh logs) runs ``--warmup`` s, then
``--seconds`` s are measured:

- frames dropped and lag (newest frame read minus newest in memory), from each camera's status
  as the front drains it every ``check_seconds``;
- questions at ``--ask-rate`` per second (Poisson) on random cameras through the front: time to
  first token as the caller sees it through Serve (the round trip less the decoding after the
  first token and the citation pass) and the whole round trip, p50 / p95;
- each shard's memory from its pings: device tensors now and at peak, the allocator's pool, the
  process's resident host memory; and each GPU's use as ``nvidia-smi`` reports it (the CUDA
  contexts included).

A count holds when no frame was dropped, the cameras delivered their frames in real time (a
file whose reader falls behind drops nothing: it is late, and counted short), lag p99 <=
``--max-lag`` s and time to first token p95 <= ``--max-ttft`` ms. With ``--failover``, after
the last count the replica holding ``cam0`` is SIGKILLed: the time until each of its cameras
answers again on a survivor (its memory reopened from the log on shared storage), and the
intervals lost -- of those the cameras' statuses reported logged before the kill, the ones
their logs lack after it (the promise: none; each camera's open interval is not stored yet
and goes).

    python benchmarks/cluster_load_bench.py --shards 2 --cameras 2 --seconds 30
    python benchmarks/cluster_load_bench.py --model videoxl-7b --checkpoint /root/vxl7b \
        --shards 1 --gpus-per-shard 1 --cameras 100 --seconds 300 --json one.json  # 1 GPU
    python benchmarks/cluster_load_bench.py --model videoxl-7b --checkpoint /root/vxl7b \
        --shards 2 --gpus-per-shard 1 --cameras 200 --seconds 300 --failover \
        --baseline one.json                             # 2 GPUs, the scaling ratio against 1

The default model is the embedded streamvxl-tiny. ``--model videoxl-7b`` serves a
Video-XL-7B-shaped checkpoint with random weights (bf16; the FLOPs and bytes of the real model,
nothing to download), written to ``--checkpoint`` once by a child process (about 15 GB) and
loaded by every replica through `Runtime.from_pretrained`, the product's own path
(``--model tiny``: the same with the conformance-sized model, for a CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import mmap
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.streams_bench import QUESTIONS, camera_clip, pct, table, transpose  # noqa: E402
from streamvxl.cluster.front import ClusterService  # noqa: E402
from streamvxl.model.shapes import SHAPES, model_shape  # noqa: E402
from streamvxl.persist.codec import unpack_meta  # noqa: E402
from streamvxl.persist.framing import HEADER_SIZE, scan  # noqa: E402
from streamvxl.persist.log import log_file  # noqa: E402
from streamvxl.persist.records import INTERVAL  # noqa: E402
from streamvxl.serve.config import parse_config  # noqa: E402

log = logging.getLogger("cluster_load_bench")

CLIPS = 16
"""Distinct camera clips; camera k reads clip k % CLIPS (all start at different moments)."""


# -- the cameras and the model -------------------------------------------------------------------
def write_clips(folder: Path, n: int, frames: int, size: tuple[int, int]) -> list[Path]:
    """``n`` H.264 files of ``frames`` `camera_clip` frames at 1 fps (``size``: height, width),
    written in parallel processes; files already there are reused (named by what they hold)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"clip{k}_{frames}f_{size[1]}x{size[0]}.mp4" for k in range(n)]
    todo = [(path, frames, size, 1000 + k) for k, path in enumerate(paths) if not path.exists()]
    if todo:
        workers = min(len(todo), max(1, (os.cpu_count() or 1) - 1))
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(write_clip, *zip(*todo, strict=True)))
    return paths


def write_clip(path: Path, frames: int, size: tuple[int, int], seed: int) -> None:
    import av

    part = path.with_suffix(".part.mp4")
    with av.open(str(part), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "28", "preset": "veryfast"}
        for image in camera_clip(frames, *size, seed=seed):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    part.rename(path)


def write_random_checkpoint(folder: Path, shape: str) -> None:
    """A checkpoint of the named shape with random weights and the test tokenizer, made on the
    first GPU in bf16 if there is one (this runs in a child process: the GPUs stay empty)."""
    import torch

    from streamvxl.model.shapes import random_model
    from streamvxl.testing import make_checkpoint

    gpu = torch.cuda.is_available()
    model = random_model(*model_shape(shape), "cuda" if gpu else "cpu",
                         torch.bfloat16 if gpu else torch.float32)
    part = folder.with_name(folder.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    make_checkpoint(part, model=model)
    part.rename(folder)


def service_text(args: argparse.Namespace, cameras: int, log_dir: Path, clips: list[Path]) -> str:
    """The serve TOML of one run: ``cameras`` cameras over ``args.shards`` shards."""
    model = ""
    if args.model != "default":
        model = f'path = "{args.checkpoint}"\n'
    model += f'device = "{args.device}"\nvision_batch = {args.vision_batch}\n'
    boundary = ""
    if args.max_frames is not None:  # the streams benchmark's intervals for an untrained model
        boundary = f"[memory.boundary]\nmax_frames = {args.max_frames}\n"
    cams = "".join(f'[cameras.cam{k}]\nsource = "{clips[k % len(clips)]}"\nfps = 1\n'
                   f"realtime = true\n" for k in range(cameras))
    return (f"[model]\n{model}"
            f'[serve]\nlog_dir = "{log_dir}"\n'
            f"[memory]\nratio = {args.ratio}\ntoken_budget = {args.budget}\n"
            f"queue_frames = {args.queue}\n{boundary}"
            f"[ray]\nshards = {args.shards}\ncpus_per_shard = {args.cpus_per_shard}\n"
            f"gpus_per_shard = {args.gpus_per_shard}\ncheck_seconds = {args.check_seconds}\n"
            f"ping_timeout = {args.ping_timeout}\n{cams}")


def frame_size(args: argparse.Namespace, gpu: bool) -> tuple[int, int]:
    """(height, width) of the cameras: ``--size``; on GPUs 360x640 as in the streams benchmark;
    on the CPU the model's own square (what its tower sees, nothing to resize)."""
    if args.size:
        height, width = (int(x) for x in args.size.lower().split("x"))
        return height, width
    if gpu:
        return 360, 640
    if args.model == "default":
        from streamvxl.model.default import DEFAULT_DELTA, read_delta_metadata
        side = int(read_delta_metadata(DEFAULT_DELTA)["vision"]["image_size"])
    else:
        side = model_shape(args.model)[1].image_size
    return side, side


# -- one run -------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    """One count of cameras for ``seconds`` measured seconds."""

    shards: int
    cameras: int
    seconds: float
    placed_s: float = 0.0
    frames: int = 0
    dropped: int = 0
    intervals: int = 0
    ended_early: int = 0
    lag: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    round_trip_ms: list[float] = field(default_factory=list)
    wait_ms: list[float] = field(default_factory=list)
    ask_errors: int = 0
    shard_memory: dict[str, dict] = field(default_factory=dict)
    """Per shard: the most of each `memory_use` field seen during the measurement."""
    gpu_mib: dict[str, int] = field(default_factory=dict)
    """Per GPU (nvidia-smi index): the most memory used during the measurement."""
    failover: dict | None = None

    @property
    def short(self) -> int:
        """Frames the cameras did not deliver in the measured time at 1 fps: a file read in real
        time that falls behind (its reader starved of CPU) drops nothing, it is late."""
        return max(0, round(self.cameras * self.seconds) - self.frames)

    def held(self, max_lag: float, max_ttft_ms: float) -> bool:
        """No frame dropped or short (one a camera of slack at the window's ends), no camera
        ended early, lag p99 and TTFT p95 within limits."""
        ttft = pct(self.ttft_ms, 95) if self.ttft_ms else 0.0
        return (self.dropped == 0 and self.short <= self.cameras and self.ended_early == 0
                and pct(self.lag, 99) <= max_lag and ttft <= max_ttft_ms)

    def row(self) -> dict:
        row = {
            "cameras": self.cameras, "shards": self.shards, "seconds": self.seconds,
            "placing s": round(self.placed_s, 1),
            "frames/s read": round(self.frames / self.seconds, 1),
            "dropped": self.dropped, "short of real time": self.short,
            "ended early": self.ended_early,
            "intervals": self.intervals,
            "lag p50 s": round(pct(self.lag, 50), 2), "lag p99 s": round(pct(self.lag, 99), 2),
            "asks": len(self.ttft_ms), "ask errors": self.ask_errors,
            "TTFT p50 ms": round(pct(self.ttft_ms, 50), 1),
            "TTFT p95 ms": round(pct(self.ttft_ms, 95), 1),
            "  waiting p95 ms": round(pct(self.wait_ms, 95), 1),
            "round trip p50 ms": round(pct(self.round_trip_ms, 50), 1),
            "round trip p95 ms": round(pct(self.round_trip_ms, 95), 1),
        }
        for name, m in sorted(self.shard_memory.items()):
            if m.get("peak") is not None:
                row[f"{name} device GiB now / peak / pool"] = (
                    f"{m['allocated'] / 2**30:.2f} / {m['peak'] / 2**30:.2f} / "
                    f"{m['reserved'] / 2**30:.2f}")
            row[f"{name} host RSS GiB"] = round((m.get("rss") or 0) / 2**30, 2)
        for gpu, mib in sorted(self.gpu_mib.items()):
            row[f"GPU {gpu} used GiB (nvidia-smi)"] = round(mib / 1024, 2)
        return row


def gpu_memory_mib() -> dict[str, int]:
    """Memory used per GPU, MiB, as nvidia-smi reports it (empty without it)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {line.split(",")[0].strip(): int(line.split(",")[1]) for line in out.splitlines()
            if "," in line}


class Running:
    """A `ClusterService` on ``loop`` (one event loop on its own thread for the whole run:
    Serve binds the routers of a process's handles to the loop of its first one), stopped on
    exit."""

    def __init__(self, text: str, loop: asyncio.AbstractEventLoop) -> None:
        self.service = ClusterService(parse_config(text), text)
        self.loop = loop
        self.stop = asyncio.Event()
        self.abandoned = False
        """Set after a failover: exiting then does not wait for the service's orderly shutdown
        (an overloaded survivor storing every camera's backlog: minutes), Ray's is enough."""

    def __enter__(self) -> Running:
        self.future = asyncio.run_coroutine_threadsafe(self.service.run(self.stop), self.loop)
        return self

    def failed(self) -> bool:
        """False while the service runs; raises what stopped it."""
        if self.future.done():
            self.future.result()
            raise RuntimeError("the service stopped")
        return False

    def call(self, coroutine, timeout: float = 300.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def ask(self, camera: str, tokens: int) -> dict:
        return self.call(self.service.ask(camera, {"question": random.choice(QUESTIONS),
                                                   "max_new_tokens": tokens}))

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        if not self.abandoned:
            self.future.result(300)


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


def measure(run: Running, n: int, args: argparse.Namespace) -> LoadResult:
    """The warm-up, then ``args.seconds`` of load on a service whose cameras are placed."""
    service = run.service
    res = LoadResult(args.shards, n, args.seconds)
    time.sleep(args.warmup)
    first = {c: dict(s) for c, s in service.statuses.items()}
    stop = threading.Event()
    lock = threading.Lock()

    def sample() -> None:
        while not stop.wait(args.check_seconds):
            statuses = list(service.statuses.values())
            with lock:
                res.lag.extend(s["lag"] for s in statuses)
                for view in list(service.shards.values()):
                    seen = res.shard_memory.setdefault(view.name, {})
                    for key, value in view.memory.items():
                        if isinstance(value, int):
                            seen[key] = max(seen.get(key, 0), value)
                for gpu, mib in gpu_memory_mib().items():
                    res.gpu_mib[gpu] = max(res.gpu_mib.get(gpu, 0), mib)

    def ask_one(camera: str) -> None:
        t0 = time.perf_counter()
        try:
            a = run.ask(camera, args.max_new_tokens)
        except Exception as e:  # noqa: BLE001 - counted; a benchmark reports, it does not stop
            log.warning("ask %s failed: %r", camera, e)
            a = {"error": repr(e)}
        rtt = time.perf_counter() - t0
        with lock:
            if "error" in a:
                res.ask_errors += 1
                return
            t = a["timings"]
            # what the caller would have waited for the first token had Serve streamed it:
            # the round trip less what the replica did after it (decoding, citations)
            res.ttft_ms.append(1000 * (rtt - (t["total"] - t["first_token"]) - t["cite"]))
            res.round_trip_ms.append(1000 * rtt)
            res.wait_ms.append(1000 * t["wait"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    rng = random.Random(n)
    with ThreadPoolExecutor(max_workers=32) as pool:
        while (now := time.monotonic()) < start + args.seconds:
            if args.ask_rate > 0:
                pool.submit(ask_one, f"cam{rng.randrange(n)}")
                time.sleep(min(rng.expovariate(args.ask_rate), start + args.seconds - now))
            else:
                time.sleep(start + args.seconds - now)
        stop.set()
    sampler.join()
    # the statuses a check after the end drained: everything stored in the measured time
    ended = time.time()
    wait_until(lambda: all(s["at"] > ended for s in service.statuses.values()), 30,
               "statuses drained after the end")
    last = service.statuses
    for camera, s in last.items():
        before = first.get(camera, {"frames_seen": 0, "frames_dropped": 0, "intervals": 0})
        res.frames += s["frames_seen"] - before["frames_seen"]
        res.dropped += s["frames_dropped"] - before["frames_dropped"]
        res.intervals += s["intervals"] - before["intervals"]
        res.ended_early += s["state"] in ("ended", "failed")
    return res


def logged_intervals(directory: Path) -> set[int]:
    """The ids of every interval record in a camera's log, evicted ones included, from the
    records' meta (their checksums are checked; their K/V is not decoded)."""
    with open(log_file(directory), "rb") as fh, \
            mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        found = scan(data, HEADER_SIZE, copy=False)
        ids = {meta["id"] for _, body in found.records
               if (meta := unpack_meta(body)).get("kind") == INTERVAL}
        del found  # its views of the map go before the map closes
    return ids


def failover(run: Running, args: argparse.Namespace, log_dir: Path) -> dict:
    """SIGKILL the replica holding cam0; time until each of its cameras answers on a survivor,
    and the intervals lost: of those its cameras' last statuses before the kill reported
    logged (ids 0..n-1: each camera started with this run), those its log lacks afterwards."""
    service = run.service
    victim = service.owner["cam0"]
    moved = sorted(c for c, s in service.owner.items() if s == victim)
    promised = {c: service.statuses.get(c, {}).get("intervals_logged", 0) for c in moved}
    os.kill(service.shards[victim].pid, signal.SIGKILL)
    killed = time.monotonic()
    answered: dict[str, float] = {}

    def resumed(camera: str) -> None:
        while True:
            try:
                if "error" not in run.ask(camera, args.max_new_tokens):
                    answered[camera] = time.monotonic() - killed
                    return
            except Exception:  # noqa: BLE001 - moving: ask again
                pass
            if time.monotonic() - killed > 600:
                return
            time.sleep(0.1)

    with ThreadPoolExecutor(max_workers=min(32, len(moved))) as pool:
        list(pool.map(resumed, moved))
    lost = sum(len(set(range(promised[c])) - logged_intervals(log_dir / c)) for c in moved)
    times = sorted(answered.values())
    reopens = [m.finished - m.started for m in service.moves
               if m.camera in promised and m.started >= killed and m.finished is not None]
    return {"killed": victim, "cameras moved": len(moved), "answered again": len(times),
            "resume s p50": round(pct(times, 50), 2), "resume s max": round(max(times), 2)
            if times else None,
            "reopen s p50 (one camera's memory from its log)": round(pct(reopens, 50), 2),
            "intervals logged before (their statuses)": sum(promised.values()),
            "intervals lost": lost}


def one_count(args: argparse.Namespace, n: int, clips: list[Path], root: Path,
              loop: asyncio.AbstractEventLoop, last: bool) -> LoadResult:
    log_dir = root / f"logs-{n}"
    shutil.rmtree(log_dir, ignore_errors=True)
    text = service_text(args, n, log_dir, clips)
    with Running(text, loop) as run:
        t0 = time.monotonic()
        wait_until(lambda: not run.failed() and len(run.service.owner) == n, args.place_timeout,
                   f"{n} cameras placed")
        placed = time.monotonic() - t0
        log.info("%d cameras placed on %d shards in %.1f s", n, args.shards, placed)
        res = measure(run, n, args)
        res.placed_s = placed
        log.info("%d cameras: %s", n, res.row())
        if last and args.failover:
            res.failover = failover(run, args, log_dir)
            log.info("failover: %s", res.failover)
            run.abandoned = True  # the last count: Ray's shutdown ends it
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("default", *SHAPES), default="default",
                   help="default: the embedded streamvxl-tiny; a shape: a checkpoint of it "
                        "with random weights (--checkpoint)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a shape's random-weight checkpoint folder (written if absent)")
    p.add_argument("--device", default=None, help="default: cuda with GPUs per shard, else cpu")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--gpus-per-shard", type=float, default=0.0)
    p.add_argument("--cpus-per-shard", type=float, default=1.0)
    p.add_argument("--cameras", default="2", help="comma-separated camera counts to try")
    p.add_argument("--seconds", type=float, default=60.0, help="measured time per count")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds of load before measuring")
    p.add_argument("--ask-rate", type=float, default=1.0, help="questions per second, all cameras")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--ratio", type=int, default=16)
    p.add_argument("--budget", type=int, default=4096, help="token budget of each camera")
    p.add_argument("--queue", type=int, default=64, help="queue_frames of each camera")
    p.add_argument("--max-frames", type=int, default=None,
                   help="longest interval (default: 20 for videoxl-7b, the model's own for tiny)")
    p.add_argument("--vision-batch", type=int, default=None,
                   help="frames per vision forward (default: 32 on GPUs, 16 on the CPU)")
    p.add_argument("--size", default=None,
                   help="camera frames HxW (default: 360x640 on GPUs, the tower's square on CPU)")
    p.add_argument("--check-seconds", type=float, default=1.0)
    p.add_argument("--ping-timeout", type=float, default=5.0)
    p.add_argument("--place-timeout", type=float, default=600.0)
    p.add_argument("--max-lag", type=float, default=10.0, help="lag p99 a held load stays under")
    p.add_argument("--max-ttft", type=float, default=250.0,
                   help="TTFT p95 (ms) a held load stays under")
    p.add_argument("--failover", action="store_true", help="after the last count, kill a replica")
    p.add_argument("--work", type=Path, default=None,
                   help="clips and logs (default: a temp dir); clips there are reused")
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs Ray may use (default: all)")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--baseline", type=Path, default=None,
                   help="another run's --json (e.g. one shard): the scaling ratio against it")
    p.add_argument("--write-checkpoint", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("streamvxl.cluster.front").setLevel(logging.WARNING)
    if args.write_checkpoint is not None:  # the child process of a shape's run
        folder, shape = args.write_checkpoint
        write_random_checkpoint(Path(folder), shape)
        return 0

    gpu = args.gpus_per_shard > 0
    args.device = args.device or ("cuda" if gpu else "cpu")
    args.vision_batch = args.vision_batch or (32 if gpu else 16)
    if args.model != "default":
        if args.checkpoint is None:
            p.error(f"--model {args.model} needs --checkpoint FOLDER (written there if absent)")
        args.checkpoint = args.checkpoint.resolve()
        args.max_frames = args.max_frames or 20  # the streams benchmark's, for an untrained model
        if not (args.checkpoint / "config.json").exists():
            t0 = time.perf_counter()
            log.info("writing a random-weight %s checkpoint to %s", args.model, args.checkpoint)
            subprocess.run([sys.executable, __file__, "--write-checkpoint", str(args.checkpoint),
                            args.model], check=True)
            log.info("checkpoint written in %.0f s", time.perf_counter() - t0)
    size = frame_size(args, gpu)
    counts = [int(n) for n in args.cameras.split(",") if n]
    root = args.work or Path(tempfile.mkdtemp(prefix="cluster_load_"))
    # every camera's file lasts the whole run: placing, warm-up, measurement, a failover
    frames = math.ceil(args.place_timeout / 4 + args.warmup + args.seconds + 120)
    t0 = time.perf_counter()
    clips = write_clips(root / "clips", min(CLIPS, max(counts)), frames, size)
    log.info("%d clips of %d frames (%dx%d) in %.0f s", len(clips), frames, size[1], size[0],
             time.perf_counter() - t0)

    import ray
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    header = (f"{args.model} ({args.device}) on {args.shards} Ray Serve shard(s) "
              f"({args.gpus_per_shard:g} GPU, {args.cpus_per_shard:g} CPU each; "
              f"Ray sees {ray.cluster_resources().get('GPU', 0):g} GPUs, "
              f"{ray.cluster_resources().get('CPU', 0):g} CPUs); cameras at 1 fps, {size[1]}x"
              f"{size[0]} H.264, r={args.ratio}, budget {args.budget} tokens/camera, vision "
              f"batch {args.vision_batch}, questions at {args.ask_rate:g}/s, "
              f"{args.max_new_tokens}-token answers")
    log.info(header)
    runs = []
    loop = asyncio.new_event_loop()
    front = threading.Thread(target=loop.run_forever, name="front", daemon=True)
    front.start()
    try:
        for i, n in enumerate(counts):
            runs.append(one_count(args, n, clips, root, loop, last=i == len(counts) - 1))
    finally:
        # the loop first: an abandoned service's next call through Serve would start Ray again
        loop.call_soon_threadsafe(loop.stop)
        front.join(60)
        ray.shutdown()
    rows = [r.row() for r in runs]
    printed = [header, table(transpose(rows, "cameras"),
                             f"live: {args.seconds:g} s measured after {args.warmup:g} s warm-up")]
    held = [r.cameras for r in runs if r.held(args.max_lag, args.max_ttft)]
    printed.append(f"held (0 drops, none short, lag p99 <= {args.max_lag:g} s, TTFT p95 <= "
                   f"{args.max_ttft:g} ms): {held or 'none of those tried'}")
    if args.baseline is not None:
        base = json.loads(args.baseline.read_text())
        mine, theirs = max(held, default=0), max(base["held"], default=0)
        ratio = f"{mine / theirs:.2f}x" if theirs else "n/a (the baseline held none)"
        # a run that held its largest count tried found a lower bound, not its most
        most = {"here": mine == max(counts), "the baseline": theirs == max(
            row["cameras"] for row in base["live"])}
        bounds = [f"{where} held every count tried (at least)" for where, top in most.items()
                  if top]
        printed.append(f"scaling: {mine} cameras held here against {theirs} in the baseline "
                       f"({base['setup'].split(';')[0]}): {ratio}"
                       + (f"; {', '.join(bounds)}" if bounds else ""))
    fail = runs[-1].failover
    if fail is not None:
        printed.append(table([fail], f"failover at {runs[-1].cameras} cameras: one replica "
                                     "SIGKILLed"))
    print("\n\n".join(printed))
    if args.json:
        Path(args.json).write_text(json.dumps({"setup": header, "argv": sys.argv[1:],
                                               "live": rows, "held": held,
                                               "failover": fail}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
