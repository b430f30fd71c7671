"""Sharded serving on Ray Serve against the in-process hub, and failover time -- one run.

1. Memories: ``--cameras`` cameras each get ``--minutes`` of 1-fps video (an FFmpeg test
   pattern) through the embedded default model, logged to ``<tmp>/memories/<camera>``; the
   first one is also saved as a snapshot for the in-process reference.
2. A local Ray cluster with ``--shards`` `CameraShard` replicas (`streamvxl.cluster`) reopens
   every camera from its log; the in-process hub opens the snapshot: the same memory.
3. Latency: ``--rounds`` paired rounds, one question in-process and one through Serve (the
   front's handle call to the camera's replica), alternating order; Serve's cost per question is
   its round trip minus the answer's own time (``timings.total + timings.cite``).
4. Throughput: for ``--seconds`` s, 1 and 8 questions in flight, through Serve and in-process.
5. Failover: the replica holding the first camera is SIGKILLed; the time until that camera
   answers again on the survivor (its memory reopened from the log), and the reopen alone.

    python benchmarks/cluster_bench.py --minutes 60 --cameras 2 --rounds 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402
import torch  # noqa: E402

from benchmarks.mqtt_bench import QUESTIONS, pct, throughput  # noqa: E402
from streamvxl import Hub, MemoryConfig, open_source  # noqa: E402
from streamvxl.cluster.front import ClusterService  # noqa: E402
from streamvxl.serve.config import parse_config  # noqa: E402

log = logging.getLogger("cluster_bench")
PATTERN = "lavfi:testsrc=size=128x96:rate=1"


def build_memories(hub: Hub, root: Path, cameras: int, minutes: float, others: float,
                   budget: int) -> None:
    for k in range(cameras):
        frames = int((minutes if k == 0 else others) * 60)
        config = MemoryConfig(token_budget=budget, log_dir=str(root / f"cam{k}"))
        stream = hub.stream(f"cam{k}", config)
        start = time.perf_counter()
        with open_source(f"{PATTERN}:duration={frames}") as source:
            for i, frame in enumerate(source):
                stream.push(frame)
                if (i + 1) % 600 == 0:
                    log.info("cam%d: %d/%d frames pushed (%.0f s)", k, i + 1, frames,
                             time.perf_counter() - start)
        stream.flush()
        s = stream.stats()
        log.info("cam%d: %d frames, %d intervals, %d tokens, %.1f MiB in %.0f s", k,
                 s.frames_seen, s.intervals_closed, s.memory_tokens, s.memory_bytes / 2**20,
                 time.perf_counter() - start)
        if k == 0:
            stream.save(root / "cam0.snapshot")
        stream.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0, help="memory per camera at 1 fps")
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--others-minutes", type=float, default=None,
                   help="memory of the cameras after the first (default: --minutes)")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--budget", type=int, default=None, help="token budget (None: all of it)")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of the in-process reference (default: torch's own); a "
                        "replica gets what Ray gives it (OMP_NUM_THREADS: its CPUs, at least 1)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("streamvxl.cluster.front").setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="cluster_bench_"))
    root = tmp / "memories"
    hub = Hub.default(device="cpu")
    others = args.minutes if args.others_minutes is None else args.others_minutes
    build_memories(hub, root, args.cameras, args.minutes, others, args.budget)
    reference = hub.open_stream("reference", root / "cam0.snapshot")
    with open_source(f"{PATTERN}:duration=1") as source:  # what each served camera's source
        for frame in source:                                # adds after its move: one frame
            reference.push(frame)
    reference.flush()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    cameras = "".join(f'[cameras.cam{k}]\nsource = "{PATTERN}:duration=1"\nfps = 1\n'
                      for k in range(args.cameras))
    text = (f'[serve]\nlog_dir = "{root}"\n[ray]\nshards = {args.shards}\n'
            f'cpus_per_shard = 0.5\ncheck_seconds = 0.5\nping_timeout = 3.0\n'
            + (f"[memory]\ntoken_budget = {args.budget}\n" if args.budget else "") + cameras)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    service = ClusterService(parse_config(text), text)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    runner = threading.Thread(target=lambda: loop.run_until_complete(service.run(stop)),
                              daemon=True)
    runner.start()

    def call(coroutine, timeout: float = 300.0):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    def serve_ask(camera: str, q: str) -> dict:
        return call(service.ask(camera, {"question": q, "max_new_tokens": args.tokens}))

    while len(service.owner) < args.cameras:
        time.sleep(0.2)
    opened = [m.finished - m.started for m in service.moves]
    log.info("cameras placed; opening each took %s s", [f"{x:.2f}" for x in opened])
    first = serve_ask("cam0", QUESTIONS[0])
    mine = reference.ask(QUESTIONS[0], max_new_tokens=args.tokens)

    direct, served, overhead = [], [], []
    for i in range(args.rounds):
        q = QUESTIONS[i % len(QUESTIONS)]
        for via_serve in ((True, False) if i % 2 else (False, True)):
            t = time.perf_counter()
            if via_serve:
                a = serve_ask("cam0", q)
                rtt = time.perf_counter() - t
                served.append(rtt)
                # the replica's own work: the answer, then its citations (after ``total``)
                overhead.append(rtt - a["timings"]["total"] - a["timings"]["cite"])
            else:
                reference.ask(q, max_new_tokens=args.tokens)
                direct.append(time.perf_counter() - t)

    pings = []  # Serve's floor here: a call that does no work, no model involved
    for _ in range(args.rounds):
        t = time.perf_counter()
        call(service._call(service.owner["cam0"], "ping", timeout=30.0))
        pings.append(time.perf_counter() - t)

    rates = []
    for inflight in (1, 8):
        for via, ask in (("serve", lambda q: serve_ask("cam0", q)),
                         ("in-process", lambda q: reference.ask(q, max_new_tokens=args.tokens))):
            rates.append((inflight, via, throughput(ask, inflight, args.seconds)))
            log.info("%d in flight, %s: %.1f answers/s", inflight, via, rates[-1][2])

    victim = service.owner["cam0"]
    moves_before = len(service.moves)
    os.kill(service.shards[victim].pid, signal.SIGKILL)
    killed = time.monotonic()
    while True:
        try:
            a = serve_ask("cam0", QUESTIONS[0])
            if "error" not in a:
                break
        except Exception:  # noqa: BLE001 - moving: ask again
            pass
        time.sleep(0.1)
    failover = time.monotonic() - killed
    move = next(m for m in service.moves[moves_before:] if m.camera == "cam0")
    reopen = move.finished - move.started
    after_same = a["text"] == first["text"] and a["intervals"] == first["intervals"]
    loop.call_soon_threadsafe(stop.set)
    runner.join(120)
    ray.shutdown()
    reference.close()
    hub.close()

    s = first
    ms = 1000.0
    print(f"\nRay Serve ({args.shards} shards, CPU) vs the in-process hub: streamvxl-tiny, "
          f"{args.cameras} cameras, cam0 with {args.minutes:.0f} min of 1-fps memory (the "
          f"others {others:.0f} min) "
          f"({len(s['intervals'])} spans in cam0's answer context, {s['context_tokens']} "
          f"tokens; in-process {len(mine.intervals)} spans, {mine.context_tokens} tokens: both "
          f"with the one frame a camera's source adds after its move), max_new_tokens "
          f"{args.tokens}; in-process torch threads {torch.get_num_threads()}")
    print("| per question | p50 ms | p90 ms | p99 ms |\n|---|---|---|---|")
    for name, xs in (("in-process `ask`", direct), ("through Serve (front -> replica)", served),
                     ("Serve minus the answer's own time (Serve's cost)", overhead)):
        print(f"| {name} | {pct(xs, .5) * ms:.2f} | {pct(xs, .9) * ms:.2f} | "
              f"{pct(xs, .99) * ms:.2f} |")
    print(f"| a ping through Serve (no work: its floor here) | {pct(pings, .5) * ms:.2f} | "
          f"{pct(pings, .9) * ms:.2f} | {pct(pings, .99) * ms:.2f} |")
    print(f"| difference of the medians | "
          f"{(statistics.median(served) - statistics.median(direct)) * ms:.2f} | | |")
    print("\n| in flight | via | answers/s |\n|---|---|---|")
    for inflight, via, rate in rates:
        print(f"| {inflight} | {via} | {rate:.1f} |")
    print(f"\nfailover: replica SIGKILLed -> cam0 answering on the survivor: {failover:.2f} s "
          f"(reopening its memory from the log: {reopen:.2f} s); the same answer after: "
          f"{after_same}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "direct": direct, "served": served, "overhead": overhead,
            "pings": pings,
            "rates": rates, "failover": failover, "reopen": reopen,
            "after_same": after_same, "context_tokens": s["context_tokens"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
