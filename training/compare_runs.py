"""Compare recipe runs side by side: speed, memory and loss parity (one table).

Each run is an ``output_dir`` of `training.recipe` (its ``metrics.jsonl``). The first run is the
reference: the others' step time and tokens/s are set against it, and their per-step losses
compared with its losses (the same seed and global batch give the same examples, so a correct
distributed run differs only by floating-point rounding)::

    python -m training.compare_runs runs/one_gpu runs/two_gpus --skip 3 --markdown table.md

Step times are medians over the steps after ``--skip`` warm-up steps (kernel selection,
allocator growth and the first collectives land in the first steps).
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunSummary:
    """One run's numbers."""

    name: str
    ranks: int
    steps: int
    step_s: float
    """Median seconds per optimizer step after warm-up."""
    tokens_per_s: float
    """Median LLM tokens per second (all ranks) after warm-up."""
    peak_gib: list[float]
    """Peak allocated GPU memory per rank over the run (empty on CPU)."""
    losses: list[float]


def read_metrics(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {folder} a recipe output_dir?")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} holds no steps")
    return rows


def summarise(folder: Path, skip: int) -> RunSummary:
    rows = read_metrics(folder)
    timed = rows[skip:] or rows[-1:]
    peaks = [r["peak_gib"] for r in rows if "peak_gib" in r]
    peak = [max(p[i] for p in peaks) for i in range(len(peaks[0]))] if peaks else []
    return RunSummary(name=folder.name, ranks=int(rows[0].get("ranks", 1)), steps=len(rows),
                      step_s=statistics.median(r["step_s"] for r in timed),
                      tokens_per_s=statistics.median(r["tokens_per_s"] for r in timed),
                      peak_gib=peak, losses=[r["loss"] for r in rows])


def loss_parity(run: RunSummary, ref: RunSummary) -> tuple[float, float, int]:
    """(max |loss - ref loss|, max relative difference, steps compared)."""
    n = min(len(run.losses), len(ref.losses))
    diffs = [abs(a - b) for a, b in zip(run.losses[:n], ref.losses[:n], strict=True)]
    rel = [d / abs(b) for d, b in zip(diffs, ref.losses[:n], strict=True) if b]
    return max(diffs, default=0.0), max(rel, default=0.0), n


def table(runs: list[RunSummary]) -> str:
    ref = runs[0]
    lines = ["| run | ranks | steps | s/step | tokens/s | speed-up | peak GiB per GPU | "
             "loss first -> last | max abs loss diff vs first run (rel.) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        peak = " / ".join(f"{g:.1f}" for g in r.peak_gib) or "-"
        if r is ref:
            parity = "(reference)"
        else:
            d, rel, n = loss_parity(r, ref)
            parity = f"{d:.2e} ({rel:.2e}) over {n} steps"
        lines.append(f"| {r.name} | {r.ranks} | {r.steps} | {r.step_s:.3f} | "
                     f"{r.tokens_per_s:,.0f} | {r.tokens_per_s / ref.tokens_per_s:.2f}x | {peak} | "
                     f"{r.losses[0]:.4f} -> {r.losses[-1]:.4f} | {parity} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.compare_runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="output_dirs; the first is the reference")
    parser.add_argument("--skip", type=int, default=2, help="warm-up steps left out of timings")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    text = table([summarise(r, args.skip) for r in args.runs])
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
