"""Where ingest time goes at Video-XL-7B scale: per-stage timings and a kernel profile.

    python benchmarks/profile_ingest.py [--vsts 18432] [--ratio 16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpu_bench import fill_memory, frames, make_memory, timed  # noqa: E402
from streamvxl.model.encoder import encode_interval  # noqa: E402
from streamvxl.model.shapes import random_model, videoxl_7b  # noqa: E402
from streamvxl.runtime import Runtime  # noqa: E402
from streamvxl.testing import make_tokenizer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--vsts", type=int, default=18432)
    p.add_argument("--ratio", type=int, default=16)
    args = p.parse_args()
    dev = torch.device("cuda")
    model = random_model(*videoxl_7b(), dev, torch.bfloat16)
    mem = make_memory(Runtime(model, make_tokenizer()), args.ratio)
    fill_memory(mem, args.vsts)
    clip = frames(60, 360, 640)
    with torch.no_grad():
        mem.extend(clip)  # warm-up
        pixels = mem.preprocessor(clip[:20], dev, model.dtype)
        stages = {
            "preprocess 20 frames": lambda: mem.preprocessor(clip[:20], dev, model.dtype),
            "vision 20 frames": lambda: model.encode_frames(pixels),
        }
        tokens = model.encode_frames(pixels).tokens[:10].reshape(1, -1, 3584)
        k, v = mem.state.store.keys(), mem.state.store.values()
        stages["one window (10 frames)"] = lambda: encode_interval(
            model, k, v, tokens, args.ratio, 1440)
        stages["extend 60 frames"] = lambda: mem.extend(clip)
        for name, fn in stages.items():
            t = timed(fn, dev, 3)
            print(f"{name:<28} {t * 1000:9.1f} ms")
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            mem.extend(clip)
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=60))


if __name__ == "__main__":
    main()
