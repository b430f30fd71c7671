"""Soak: a real RTSP camera restarted every minute, streamed into ``VideoMemory()`` for minutes.

A gst-rtsp-server (``tests/sources/rtsp_server.py``, system python3 with GStreamer) is killed
every ``--every`` seconds and started again ``--down`` seconds later; a `LiveSource` reads it at
``--fps`` into the embedded default model's memory (a token budget keeps it bounded). At the end
it prints one table: exceptions that reached the reader (0), reconnects (one per restart), each
outage against the gap the memory recorded (within 2 s), and memory over time (flat).

    python benchmarks/source_soak.py --minutes 10 --every 60 --down 5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamvxl import MemoryConfig, VideoMemory  # noqa: E402
from streamvxl.sources import Reconnect, open_source  # noqa: E402
from tests.sources.rtsp import RtspServer, rtsp_unavailable  # noqa: E402

log = logging.getLogger("source_soak")


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--every", type=float, default=60.0, help="seconds between restarts")
    p.add_argument("--down", type=float, default=5.0, help="seconds the camera stays down")
    p.add_argument("--fps", type=float, default=2.0)
    p.add_argument("--budget", type=int, default=512,
                   help="memory tokens; small enough to fill in the first minutes")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("streamvxl.sources.live").setLevel(logging.WARNING)
    if (why := rtsp_unavailable()) is not None:
        log.error("%s", why)
        return 2

    mem = VideoMemory(config=MemoryConfig(token_budget=args.budget))
    server = RtspServer()
    server.start()
    src = open_source(server.url, fps=args.fps,
                      reconnect=Reconnect(initial_delay=0.2, max_delay=0.5, stall_timeout=5.0))
    errors: list[str] = []
    pushed = [0]

    def read() -> None:
        try:
            for frame in src:
                mem.push(frame)
                pushed[0] += 1
        except BaseException as e:  # noqa: BLE001 - counted: the soak's first number
            errors.append(repr(e))

    def on_source_clock(moment: float) -> float:
        """A `time.monotonic()` moment as a timestamp of the source's frames."""
        return src.now() - (time.monotonic() - moment)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    outages: list[tuple[float, float]] = []  # (down, up) on the source's clock
    samples: list[tuple[float, float, int]] = []  # (time, RSS MiB, memory tokens)
    recorded: set = set()  # every gap the memory has shown in its stats
    start = time.monotonic()
    restarts = int(60 * args.minutes // args.every)  # at every, 2 * every, ... minutes * 60 s
    end = start + 60 * args.minutes + args.down + 15  # and see the last one come back
    next_kill = start + args.every
    while time.monotonic() < end:
        time.sleep(1.0)
        s = mem.stats()
        recorded.update(s.gaps)  # as they appear: old ones leave with their intervals
        samples.append((src.now(), rss_mib(), s.memory_tokens))
        if time.monotonic() >= next_kill and len(outages) < restarts:
            down = on_source_clock(server.kill())
            time.sleep(args.down)
            up = on_source_clock(server.start())
            outages.append((down, up))
            log.info("restart %d: down %.1f s -> %.1f s", len(outages), down, up)
            next_kill += args.every
        if len(samples) % 60 == 0:
            log.info("%.0f s: %d frames pushed, %d in memory, %d tokens, RSS %.0f MiB, "
                     "%d reconnects, %d gaps held", samples[-1][0], pushed[0], s.frames_seen,
                     s.memory_tokens, samples[-1][1], src.stats().reconnects, len(s.gaps))
    src.close()
    reader.join(30)
    mem.wait()
    stats, source = mem.stats(), src.stats()
    mem.close()
    server.kill()

    recorded.update(stats.gaps)
    gaps = sorted(recorded, key=lambda g: g.start)
    rows = []
    for k, (down, up) in enumerate(outages):
        match = min(gaps, key=lambda g: abs(g.start - down), default=None)
        rows.append({"restart": k + 1, "camera down s": round(up - down, 2),
                     "gap in memory s": round(match.seconds, 2) if match else None,
                     "difference s": round(match.seconds - (up - down), 2) if match else None,
                     "gap": f"{match.start:.1f}-{match.end:.1f} s ({match.cause})" if match
                     else "none"})
    full_at = next((x[0] for x in samples if x[2] >= 0.9 * args.budget), None)
    full = [x[1] for x in samples if full_at is not None and x[0] >= full_at]
    summary = {
        "minutes": args.minutes, "restarts": len(outages), "exceptions": len(errors),
        "reconnects": source.reconnects, "gaps recorded in memory": len(gaps),
        "frames pushed": pushed[0],
        "frames in memory": stats.frames_seen, "dropped (source + memory)":
        source.frames_dropped + stats.frames_dropped,
        "memory tokens max / budget": f"{max(x[2] for x in samples)} / {args.budget}",
        "budget full after s": round(full_at) if full_at is not None else "never",
        "RSS MiB once full: first / max / last": f"{full[0]:.0f} / {max(full):.0f} / "
                                                 f"{full[-1]:.0f}" if full else "-",
        "largest |gap - downtime| s": max((abs(r["difference s"]) for r in rows
                                           if r["difference s"] is not None), default=None),
    }
    width = max(len(k) for k in summary)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in summary.items()))
    print()
    print("restart | camera down s | gap in memory s | difference s | gap")
    for r in rows:
        print(f"{r['restart']:>7} | {r['camera down s']:>13} | {r['gap in memory s']!s:>15} | "
              f"{r['difference s']!s:>12} | {r['gap']}")
    if errors:
        print("exceptions:", errors)
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "restarts": rows,
                                               "errors": errors}, indent=1))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
