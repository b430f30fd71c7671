"""Hours of video in a small GPU budget: needles found with retrieval, drop-oldest, and everything.

Each haystack is a synthetic stream at 1 fps (`training.niah.make_haystack`: a scene cut every
32 frames, objects coming and going, one sign shown for 2 frames at a chosen depth, and two
objects of shapes no other object has, planted a third and two thirds of the stream further on:
`training.niah.plant_objects`) pushed through `VideoMemory` on the embedded default model at
ratio 16. Every memory is asked the needle ("What word was written on the sign?") and the
world's questions that stay unambiguous over hours about the planted objects (their colour,
which came first, before / after, how many of their shape, when each appeared and left:
`Haystack.event_questions`). Per haystack:

- ``full``: an unbounded memory, everything in context (only where it fits the base model's
  trained positions);
- per budget fraction f (the GPU ``token_budget`` is the sink plus f of the full memory's
  tokens): one memory with ``eviction="offload"`` (the host tier, then the log on disk), asked
  twice -- ``retrieval`` (the question picks from every tier, `Retrieval()` default: the GPU
  budget's worth of tokens, a quarter of it the newest) and ``drop_oldest`` (``retrieve=False``:
  the intervals on the GPU, exactly what a ``drop_oldest`` memory keeps, as
  tests/runtime/test_tiers.py shows).

With ``--scorers keys,frames,both`` the retrieval condition is run once per `Retrieval.scorer`:
the memory keeps its frames' embeddings, and the other scorers reopen its log.

For every answer: right or wrong (`streamvxl.world.is_correct`), whether the top cited interval
shows what was asked about (the sign; the planted object named; for "when" questions the
frame of the appearance or exit asked: the evidence an agent would show -- and, apart,
whether it shows the object at all; where the runtime has a moment probe, the same "when"
answers are cited again without it, side by side), time to first token,
whole ask (with the citation pass), context tokens. Per memory: device memory at ten points of
the stream (flat?), host tier bytes against its budget, intervals on disk.

Run it (GPU, several haystacks side by side in worker processes)::

    python -m benchmarks.recall_eval --hours 1,4 --depths 0.1,0.3,0.5,0.7,0.9 \\
        --fractions 0.1,0.01 --workers 6 --out docs/results/recall

It prints progress per haystack and a table, and writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("benchmarks.recall_eval")

RATIO = 16
FPS = 1.0
QUESTION_TOKENS = 64


@dataclass(frozen=True)
class Case:
    hours: float
    depth: float
    seed: int
    fractions: tuple[float, ...]
    host_fraction: float
    threads: int
    full_limit: int
    retrieval_budgets: tuple[int, ...]
    keep: str | None
    scorers: tuple[str, ...] = ("keys",)
    reopen: bool = False
    """Ask the logs ``keep`` holds from an earlier run instead of feeding the haystack again."""

    @property
    def frames(self) -> int:
        return int(round(self.hours * 3600 * FPS))


def log_folder(keep: Path, hours: float, seed: int, fraction: float) -> Path:
    """Where one haystack's memory log at one budget lives under ``--keep``."""
    return keep / f"{hours:g}h_seed{seed}_f{fraction:g}"


def check_keep(keep: Path, cases: list[Case], reopen: bool) -> str | None:
    """Why ``keep`` cannot serve ``cases``, before any haystack is fed: reopening needs every
    log there; feeding needs none of them there (a memory log is never overwritten, and finding
    that out in a worker costs the run)."""
    for case in cases:
        for fraction in case.fractions:
            where = log_folder(keep, case.hours, case.seed, fraction)
            held = where.is_dir() and any(where.iterdir())
            if reopen and not held:
                return f"--reopen: no kept log at {where} (feed it first with the same settings)"
            if not reopen and held:
                return (f"{where} already holds a log (an earlier run?): give --keep an empty "
                        "folder, or ask it again with --reopen")
    return None


def run_case(case: Case) -> list[dict[str, Any]]:
    """Every condition of one haystack (in a worker process)."""
    import torch

    torch.set_num_threads(case.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # spawned
    from streamvxl import MemoryConfig, VideoMemory
    from streamvxl.memory.recall import Retrieval
    from streamvxl.world import is_correct
    hay = haystack(case.frames, case.depth, case.seed)
    questions = [(hay.qa, [hay.needle_span], [hay.needle_span])] + [
        (qa, event_spans(qa, hay.planted), named_spans(qa, hay.planted))
        for qa in hay.event_questions(np.random.default_rng(case.seed))]
    # one memory per budget keeps what every scorer asked for needs (frame embeddings when any
    # reads frames); the others reopen its log with their own `Retrieval` (a serving field)
    fed = Retrieval(scorer=case.scorers[0] if len(case.scorers) == 1 else
                    "both" if set(case.scorers) - {"keys"} else "keys")
    memory = VideoMemory(config=MemoryConfig(ratio=RATIO, retrieval=fed), background=False)
    runtime = memory.runtime
    limit = case.full_limit
    cuda = runtime.model.device.type == "cuda"
    rows: list[dict[str, Any]] = []

    def feed(mem: VideoMemory, what: str) -> list[int]:
        """Push the haystack; device bytes allocated at ten points along it."""
        marks, step, i, start = [], max(1, case.frames // 10), 0, time.perf_counter()
        for chunk in hay.chunks():  # one scene at a time: batches for the vision tower
            mem.extend(list(chunk), timestamps=[(i + k) / FPS for k in range(len(chunk))])
            if (i + len(chunk)) // step > i // step:
                mem.flush()
                marks.append(torch.cuda.memory_allocated() if cuda else 0)
                log.info("%g h seed %d, %s: %d of %d frames fed in %.0f s", case.hours,
                         case.seed, what, i + len(chunk), case.frames,
                         time.perf_counter() - start)
            i += len(chunk)
        mem.flush()
        return marks

    def ask(mem: VideoMemory, method: str, budget: int | None, **kw: Any
            ) -> list[dict[str, Any]]:
        rows = []
        for qa, spans, named in questions:  # frames [lo, hi) showing what is asked / named
            answer = mem.ask(qa.question, max_new_tokens=16, **kw)

            def shows(s: Any, spans: list[tuple[int, int]] = spans) -> bool:
                return any(s.t_start <= (hi - 1) / FPS and s.t_end >= lo / FPS
                           for lo, hi in spans)

            found = bool(answer.cited) and shows(answer.cited[0])
            found_named = bool(answer.cited) and shows(answer.cited[0], named)
            in_context = any(shows(s) for s in answer.intervals)
            t = answer.timings
            plain = {}
            if qa.form in WHEN_FORMS and runtime.moment_probe is not None:
                # the same answer cited by the frames match alone: the probe's effect, side by
                # side (greedy: the same text; only the citation pass differs)
                probe, runtime.moment_probe = runtime.moment_probe, None
                try:
                    again = mem.ask(qa.question, max_new_tokens=16, **kw)
                finally:
                    runtime.moment_probe = probe
                assert again.text == answer.text, (again.text, answer.text)
                plain = {"top_cited_has_event_without_moment":
                         bool(again.cited) and shows(again.cited[0])}
            rows.append({**plain,
                "hours": case.hours, "depth": case.depth, "seed": case.seed, "method": method,
                "budget": budget, "task": qa.task, "form": qa.form, "question": qa.question,
                "answer": answer.text, "truth": qa.answer,
                "correct": bool(is_correct(answer.text, qa)), "top_cited_has_event": found,
                "top_cited_has_named": found_named,
                "event_in_context": in_context, "first_token_s": t.first_token,
                "answer_s": t.total, "retrieve_s": t.retrieve, "cite_s": t.cite,
                "context_tokens": answer.context_tokens, "candidates": answer.candidates,
                "cited": [[c.t_start, c.t_end, c.weight, c.match] for c in answer.cited[:8]]})
        return rows

    # everything in context, where the base model's positions reach
    full_tokens = None
    memory.reset()
    if not case.reopen and case.frames * runtime.model.tokens_per_frame / RATIO + 200 < limit:
        marks = feed(memory, "everything in context")
        full_tokens = memory.stats().memory_tokens
        rows += [{**row, "device_bytes": marks} for row in ask(memory, "full", None)]
    sink = memory.stats().sink_tokens
    memory.close()
    tokens = full_tokens or int(case.frames * runtime.model.tokens_per_frame / RATIO)
    for fraction in case.fractions:
        budget = max(sink + 24, sink + int(round(fraction * tokens)))  # sink + one interval
        host = int(round(case.host_fraction * tokens))
        with tempfile.TemporaryDirectory() as tmp:
            where = log_folder(Path(case.keep or tmp), case.hours, case.seed, fraction)
            cfg = MemoryConfig(ratio=RATIO, token_budget=budget, eviction="offload",
                               host_budget=host, log_dir=where, retrieval=fed)
            if case.reopen:  # the same haystack, fed by an earlier run (its device marks lost)
                mem = VideoMemory.open(where, runtime=runtime, background=False, config=cfg)
                marks = []
            else:
                mem = VideoMemory.on(runtime, cfg, background=False)
                marks = feed(mem, f"budget {fraction:g} of the memory")
            stats = mem.stats()
            tiers = dict(fraction=fraction, device_bytes=marks, host_bytes=stats.host_bytes,
                         host_budget_bytes=host * mem.state.store.arena.bytes_per_token * 2 // 3,
                         on_disk=stats.intervals_on_disk, on_host=stats.intervals_on_host,
                         in_gpu=stats.intervals_in_memory,
                         digest_bytes=mem.state.digests.nbytes)
            rows += [{**row, **tiers} for row in ask(mem, "drop_oldest", budget, retrieve=False)]
            if case.scorers == ("keys",):
                rows += [{**row, **tiers} for row in ask(mem, "retrieval", budget)]
            elif fed.scorer in case.scorers:
                rows += [{**row, **tiers} for row in ask(mem, f"retrieval ({fed.scorer})", budget)]
            mem.close()
            for scorer in case.scorers:
                if scorer == fed.scorer:
                    continue
                again = VideoMemory.open(where, runtime=runtime, background=False,
                                         config=replace(cfg, retrieval=Retrieval(scorer=scorer)))
                rows += [{**row, **tiers} for row in ask(again, f"retrieval ({scorer})", budget)]
                again.close()
            for b in case.retrieval_budgets:  # the same log, reopened to read less per question
                start = time.perf_counter()
                again = VideoMemory.open(where, runtime=runtime, background=False,
                                         config=replace(cfg, retrieval=replace(fed, budget=b)))
                opened = time.perf_counter() - start
                rows += [{**row, **tiers, "reopen_s": opened}
                         for row in ask(again, f"retrieval {b}", budget)]
                again.close()
    return rows


WHEN_FORMS = ("when_appear", "when_leave")


def haystack(frames: int, depth: float, seed: int) -> Any:
    """The haystack of ``frames`` at 1 fps with its needle at ``depth`` and two planted
    objects a third and two thirds of the stream further on (`training.niah.Haystack`)."""
    from training.niah import make_haystack, plant_objects

    hay = make_haystack(frames, depth, seed=seed, fps=FPS)
    return plant_objects(hay, ((depth + 1 / 3) % 1.0, (depth + 2 / 3) % 1.0), seed=seed)


def event_spans(qa, planted) -> list[tuple[int, int]]:
    """Video frames [lo, hi) an answer to ``qa`` (about ``planted`` objects) may cite: for
    "when" questions the frame(s) asked about, else the visible span of an object it names."""
    if qa.form in WHEN_FORMS:
        return [qa.evidence]
    params = dict(qa.params)
    if "shape" in params:
        named = [o for o in planted if o.shape == params["shape"]]
    else:
        named = [planted[int(params["a"])], planted[int(params["b"])]]
    return [(o.t_in, o.t_out) for o in named]


def named_spans(qa, planted) -> list[tuple[int, int]]:
    """Video frames [lo, hi) showing an object ``qa`` names (for "when" questions the whole
    time the object is visible, not only the moment asked about)."""
    if qa.form in WHEN_FORMS:
        o = planted[int(dict(qa.params)["object"])]
        return [(o.t_in, o.t_out)]
    return event_spans(qa, planted)


def latency(keep: Path, repeats: int) -> list[dict[str, Any]]:
    """Ask latency on each kept log of the longest streams, in this process alone: retrieval
    against the in-budget ask (``retrieve=False``) on the same memory, interleaved."""
    from streamvxl import VideoMemory

    logs = sorted(keep.iterdir())
    longest = max(float(p.name.split("h_")[0]) for p in logs)
    rows = []
    for path in logs:
        hours = float(path.name.split("h_")[0])
        if hours != longest or not path.name.startswith(f"{hours:g}h_seed0_"):
            continue
        mem = VideoMemory.open(path, background=False)
        question = "What word was written on the sign?"
        timings: dict[str, list] = {"retrieval": [], "in budget": []}
        mem.ask(question, max_new_tokens=16)  # warm: graphs, kernels, caches
        mem.ask(question, max_new_tokens=16, retrieve=False)
        for _ in range(repeats):
            timings["retrieval"].append(mem.ask(question, max_new_tokens=16).timings)
            timings["in budget"].append(
                mem.ask(question, max_new_tokens=16, retrieve=False).timings)
        stats, cfg = mem.stats(), mem.config
        held = stats.intervals_in_memory + stats.intervals_on_host + stats.intervals_on_disk
        base = statistics.median(t.total for t in timings["in budget"])
        for reads, ts in timings.items():
            rows.append({"method": "latency", "hours": hours, "reads": reads,
                         "fraction": float(path.name.split("_f")[1]),
                         "memory_over_budget": held * stats.memory_tokens
                         / max(1, stats.intervals_in_memory) / cfg.token_budget,
                         "first_token_s": statistics.median(t.first_token for t in ts),
                         "answer_s": statistics.median(t.total for t in ts),
                         "retrieve_s": statistics.median(t.retrieve for t in ts),
                         "cite_s": statistics.median(t.cite for t in ts),
                         "ratio": statistics.median(t.total for t in ts) / base})
        mem.close()
    return rows


def summary(rows: list[dict[str, Any]]) -> str:
    """Markdown tables: needles, then the planted objects' questions, per hours x method;
    latency; device and host memory."""
    def share(xs: list[bool]) -> str:
        return f"{100 * sum(xs) / len(xs):.0f} % ({sum(xs)}/{len(xs)})" if xs else "-"

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["hours"], r["method"], r.get("fraction"))
        groups.setdefault(key, []).append(r)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0], -(kv[0][2] or 1.0), kv[0][1]))
    out = ["| hours | method | GPU budget | needles right | top cited has the sign | "
           "sign in context | context tokens |", "|---:|---|---:|---:|---:|---:|---:|"]
    for (hours, method, fraction), rs in ordered:
        needles = [r for r in rs if r.get("task") == "needle"]
        if method == "latency" or not needles:
            continue
        budget = "all" if fraction is None else f"1/{round(1 / fraction)}"
        out.append(
            f"| {hours:g} | {method} | {budget} | {share([r['correct'] for r in needles])} | "
            f"{share([r['top_cited_has_event'] for r in needles])} | "
            f"{share([r['event_in_context'] for r in needles])} | "
            f"{statistics.median(r['context_tokens'] for r in needles):.0f} |")
    out += ["", "The planted objects (a shape no other object of the stream has): answers right "
            "per question form; whether the top cited interval shows the moment a \"when\" "
            "question asks about, and for the other forms an object the question names:", "",
            "| hours | method | GPU budget | colour of the <shape> | which first | before | "
            "how many | when (answer) | when: top cited has the moment | ... without the "
            "moment probe | when: top cited shows the object | others: top cited has the object "
            "| object in context |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (hours, method, fraction), rs in ordered:
        events = [r for r in rs if r.get("task") not in (None, "needle")]
        if method == "latency" or not events:
            continue
        budget = "all" if fraction is None else f"1/{round(1 / fraction)}"

        def of(*forms: str, key: str = "correct", rs: list = events) -> str:
            return share([r[key] for r in rs if r["form"] in forms and key in r])

        others = tuple({r["form"] for r in events} - set(WHEN_FORMS))
        out.append(
            f"| {hours:g} | {method} | {budget} | {of('colour_of_shape')} | "
            f"{of('first_of_two')} | {of('before')} | {of('count_shape')} | "
            f"{of(*WHEN_FORMS)} | {of(*WHEN_FORMS, key='top_cited_has_event')} | "
            f"{of(*WHEN_FORMS, key='top_cited_has_event_without_moment')} | "
            f"{of(*WHEN_FORMS, key='top_cited_has_named')} | "
            f"{of(*others, key='top_cited_has_event')} | "
            f"{share([r['event_in_context'] for r in events])} |")
    lat = [r for r in rows if r["method"] == "latency"]
    if lat:
        out += ["", "Ask latency, nothing else running (one process; median of the repeats, "
                "seconds):",
                "", "| hours | GPU budget | memory / budget | question reads | first token | "
                "answer | of which retrieval | citing after | ratio (answer) |",
                "|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
        for r in lat:
            out.append(f"| {r['hours']:g} | 1/{round(1 / r['fraction'])} | "
                       f"{r['memory_over_budget']:.0f}x | {r['reads']} | {r['first_token_s']:.3f} | "
                       f"{r['answer_s']:.3f} | {r['retrieve_s']:.3f} | {r['cite_s']:.3f} | "
                       f"{r['ratio']:.2f} |")
    flat = ["", "| hours | method | GPU budget | device MiB along the stream (min - max) | "
            "host tier MiB / budget MiB | intervals GPU / host / disk |",
            "|---:|---|---:|---|---|---|"]
    for (hours, method, fraction), rs in sorted(groups.items(), key=lambda kv: (
            kv[0][0], -(kv[0][2] or 1.0), kv[0][1])):
        if not method.startswith("retrieval") and method != "full":
            continue
        r = rs[0]
        marks = [m / 2**20 for m in r["device_bytes"][1:]] or [0.0]
        device = (f"{min(marks):.1f} - {max(marks):.1f}" if r["device_bytes"]
                  else "- (reopened)")
        tiers = "-" if fraction is None else (
            f"{r['host_bytes'] / 2**20:.1f} / {r['host_budget_bytes'] / 2**20:.1f}")
        counts = "-" if fraction is None else f"{r['in_gpu']} / {r['on_host']} / {r['on_disk']}"
        budget = "all" if fraction is None else f"1/{round(1 / fraction)}"
        flat.append(f"| {hours:g} | {method} | {budget} | {device} | {tiers} | {counts} |")
    return "\n".join(out + flat)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", default="1", help="stream lengths, comma-separated")
    p.add_argument("--depths", default="0.1,0.3,0.5,0.7,0.9")
    p.add_argument("--haystacks", default="5",
                   help="haystacks per length (seeds 0..n-1, depths in turn), or one per length")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seed of the first haystack: fresh haystacks for a rule chosen on the "
                        "first ones")
    p.add_argument("--retrieval-budgets", default="",
                   help="also reopen each log with these retrieval budgets (tokens), e.g. 256,128")
    p.add_argument("--keep", type=Path, default=None,
                   help="keep the logs here (else a temporary folder), for --latency")
    p.add_argument("--reopen", action="store_true",
                   help="ask the logs --keep holds (an earlier run with the same --hours, "
                        "--haystacks, --depths, --fractions) instead of feeding again: a "
                        "retrieval or citation change measured in minutes, not hours")
    p.add_argument("--latency", type=int, default=0,
                   help="then time this many asks on the longest kept logs, GPU otherwise idle")
    p.add_argument("--fractions", default="0.1,0.01", help="GPU budget / full memory")
    p.add_argument("--scorers", default="keys",
                   help="retrieval scorers to compare (`Retrieval.scorer`: keys, frames, both); "
                        "with any but keys, every memory keeps frame embeddings and cites with "
                        "them (`streamvxl.runtime.citations`)")
    p.add_argument("--host-fraction", type=float, default=0.2,
                   help="host tier budget / full memory (the rest goes to disk)")
    p.add_argument("--full-limit", type=int, default=8192,
                   help="longest context 'full' is run at (SmolLM2-135M was trained to 8192)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.reopen and args.keep is None:
        p.error("--reopen asks the logs --keep holds: give --keep")
    fractions = tuple(float(x) for x in args.fractions.split(","))
    budgets = [int(b) for b in args.retrieval_budgets.split(",") if b]
    keep = str(args.keep) if args.keep is not None else None
    depths = [float(d) for d in args.depths.split(",")]
    counts = [int(n) for n in args.haystacks.split(",")]
    hours = [float(h) for h in args.hours.split(",")]
    if len(counts) == 1:
        counts *= len(hours)
    # haystack k of a length: seed first + k (its own scenes and sign), the depths in turn
    cases = [Case(h, depths[k % len(depths)], args.first_seed + k, fractions,
                  args.host_fraction, args.threads, args.full_limit, tuple(budgets), keep,
                  tuple(args.scorers.split(",")), args.reopen)
             for h, n in zip(hours, counts, strict=True) for k in range(n)]
    cases.sort(key=lambda c: -c.frames)  # longest first: the pool ends evenly
    if args.keep is not None and (why := check_keep(args.keep, cases, args.reopen)):
        p.error(why)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        for k, got in enumerate(pool.imap_unordered(run_case, cases), 1):
            rows.extend(got)
            if args.out is not None:  # as it goes: a run cut short keeps what it measured
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
            done: dict[str, list[bool]] = {}
            for r in got:
                name = r["method"] + ("" if r["budget"] is None else f"@{r['budget']}")
                done.setdefault(name, []).append(r["correct"])
            done_text = ", ".join(f"{name}={'needle right' if oks[0] else 'needle wrong'}"
                                  f" +{sum(oks[1:])}/{len(oks) - 1}" for name, oks in done.items())
            log.info("[%d/%d] %.0f s: %g h depth %g seed %d: %s", k, len(cases),
                     time.perf_counter() - start, got[0]["hours"], got[0]["depth"],
                     got[0]["seed"], done_text)
    if args.latency and args.keep is not None:
        log.info("latency: asking on the kept logs, this process alone")
        rows.extend(latency(args.keep, args.latency))
    table = summary(rows)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
        args.out.with_suffix(".md").write_text(
            f"# Retrieval over hours of video\n\n`python -m benchmarks.recall_eval "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}` "
            f"({os.cpu_count()} CPU cores; {_device()})\n\n{table}\n")
    return 0


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return "no GPU"


if __name__ == "__main__":
    sys.exit(main())
