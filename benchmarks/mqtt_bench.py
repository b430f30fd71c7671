"""What the MQTT bridge costs: the latency it adds to a question, and the questions per second
it sustains, against asking the same memory directly -- side by side in one run.

A real mosquitto on loopback, ``streamvxl serve``'s `Service` on the embedded default model
(streamvxl-tiny unless ``--model``), one camera whose clip is fully in memory before measuring
(so every question sees the same memory). Then:

- latency: ``--rounds`` rounds, each one direct ``ask`` and one question over MQTT 5 (response
  topic + correlation data) from a paho client, in alternating order. The bridge's cost of a
  question is its round trip at the client minus the answer's own ``timings.total`` (paired,
  per question); the table also shows both round trips.
- throughput: for ``--seconds`` s, ``C`` questions kept in flight (1, 8, 64), over MQTT and
  directly (C threads calling ``ask``), answers per second.

    python benchmarks/mqtt_bench.py --rounds 200 --seconds 20        # CPU, streamvxl-tiny
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamvxl import Hub  # noqa: E402
from streamvxl.serve.config import parse_config  # noqa: E402
from tests.serve.agent import Agent, Running, decode  # noqa: E402
from tests.serve.broker import Mosquitto, mosquitto_unavailable  # noqa: E402

log = logging.getLogger("mqtt_bench")
QUESTIONS = ("What is shown?", "What colour is the largest object?", "Is anything moving?",
             "How many objects are there?")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def latency(agent: Agent, stream, rounds: int, tokens: int) -> dict:
    """Paired: the bridge's share of each MQTT question, and both round trips."""
    direct, over, overhead = [], [], []
    for i in range(rounds):
        q = QUESTIONS[i % len(QUESTIONS)]
        for mqtt_first in ((True, False) if i % 2 else (False, True)):
            if mqtt_first:
                t = time.perf_counter()
                a = agent.ask("bench/cam/ask", {"question": q, "max_new_tokens": tokens},
                              reply="bench/replies/latency")
                rtt = time.perf_counter() - t
                over.append(rtt)
                overhead.append(rtt - a["timings"]["total"])
            else:
                t = time.perf_counter()
                stream.ask(q, max_new_tokens=tokens)
                direct.append(time.perf_counter() - t)
        if (i + 1) % max(1, rounds // 5) == 0:
            log.info("latency: %d/%d rounds", i + 1, rounds)
    return {"direct": direct, "mqtt": over, "overhead": overhead}


def throughput_mqtt(agent: Agent, inflight: int, seconds: float, tokens: int) -> float:
    """Answers per second with ``inflight`` questions kept outstanding over MQTT for
    ``seconds``, counted like the direct run: every question sent, over the time until its
    last answer."""
    reply = f"bench/replies/{uuid.uuid4().hex[:6]}"
    replies = agent.listen(reply)
    sent = done = 0
    start = time.perf_counter()
    end = start + seconds
    for _ in range(inflight):
        agent.request("bench/cam/ask", {"question": QUESTIONS[sent % 4],
                                        "max_new_tokens": tokens}, reply=reply)
        sent += 1
    while done < sent:
        message = replies.get(timeout=300)
        assert "text" in decode(message.payload), message.payload
        done += 1
        if time.perf_counter() < end:
            agent.request("bench/cam/ask", {"question": QUESTIONS[sent % 4],
                                            "max_new_tokens": tokens}, reply=reply)
            sent += 1
    return done / (time.perf_counter() - start)


def throughput(ask: Callable[[str], object], inflight: int, seconds: float) -> float:
    """Answers per second from ``inflight`` threads each calling ``ask(question)`` until
    ``seconds`` have passed (every question sent is counted, over the time to its answer)."""
    counts = [0] * inflight
    end = time.perf_counter() + seconds

    def asker(k: int) -> None:
        while time.perf_counter() < end:
            ask(QUESTIONS[counts[k] % len(QUESTIONS)])
            counts[k] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=asker, args=(k,)) for k in range(inflight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="a checkpoint (default: streamvxl-tiny)")
    p.add_argument("--frames", type=int, default=64, help="frames in the camera's memory")
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--tokens", type=int, default=16, help="max_new_tokens per question")
    p.add_argument("--seconds", type=float, default=20.0, help="per throughput run")
    p.add_argument("--inflight", default="1,8,64")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for quiet in ("streamvxl.serve.bridge", "streamvxl.serve.service", "streamvxl.sources"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    if (why := mosquitto_unavailable()) is not None:
        log.error("%s", why)
        return 2
    hub = Hub.from_pretrained(args.model, device="cpu") if args.model else Hub.default(
        device="cpu")
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp)) as broker:
        config = parse_config(f"""
[serve]
health_seconds = 3600
[mqtt]
port = {broker.port}
prefix = "bench"
max_pending = 1024
[cameras.cam]
source = "lavfi:testsrc=size=320x240:rate=2:duration={args.frames / 2}"
fps = 2
""")
        running = Running(config, hub)
        cam = running.service.cameras["cam"]
        while cam.state != "ended":
            time.sleep(0.1)
        cam.stream.wait()
        stats = cam.stream.stats()
        log.info("memory: %d frames, %d intervals, %d tokens", stats.frames_seen,
                 stats.intervals_closed, stats.memory_tokens)
        agent = Agent(broker.port)
        agent.ask("bench/cam/ask", {"question": "warm up?", "max_new_tokens": 2},
                  reply="bench/replies/latency")
        lat = latency(agent, cam.stream, args.rounds, args.tokens)
        rates = []
        for c in (int(x) for x in args.inflight.split(",")):
            m = throughput_mqtt(agent, c, args.seconds, args.tokens)
            d = throughput(lambda q: cam.stream.ask(q, max_new_tokens=args.tokens), c,
                           args.seconds)
            log.info("in flight %d: %.1f/s over MQTT, %.1f/s direct", c, m, d)
            rates.append({"inflight": c, "mqtt": m, "direct": d})
        errors = dict(running.service.bridge.stats.errors)
        agent.close()
        assert running.close() == 0
    hub.close()

    ms = 1000.0
    print(f"\nMQTT bridge on loopback, {args.model or 'streamvxl-tiny'} on CPU, "
          f"{stats.frames_seen} frames / {stats.intervals_closed} intervals in memory, "
          f"max_new_tokens {args.tokens}, {args.rounds} paired rounds; errors {errors or 0}")
    print("| per question | p50 ms | p90 ms | p99 ms |\n|---|---|---|---|")
    for name, key in (("direct `ask` round trip", "direct"), ("MQTT round trip", "mqtt"),
                      ("MQTT minus the answer's own total (the bridge's cost)", "overhead")):
        xs = lat[key]
        print(f"| {name} | {pct(xs, .5) * ms:.2f} | {pct(xs, .9) * ms:.2f} | "
              f"{pct(xs, .99) * ms:.2f} |")
    added = statistics.median(lat["mqtt"]) - statistics.median(lat["direct"])
    print(f"| difference of the medians (MQTT - direct) | {added * ms:.2f} | | |")
    print("\n| questions in flight | answers/s over MQTT | answers/s direct | ratio |\n"
          "|---|---|---|---|")
    for r in rates:
        print(f"| {r['inflight']} | {r['mqtt']:.1f} | {r['direct']:.1f} | "
              f"{r['mqtt'] / r['direct']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "latency": lat,
                                               "throughput": rates, "errors": errors}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
