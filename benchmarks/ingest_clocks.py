"""Diagnosis: attention kernel time inside a sustained ``extend`` (CUDA events, no syncs),
with the SM clock and power sampled by nvidia-smi meanwhile."""
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gpu_bench import fill_memory, frames, make_memory  # noqa: E402
from streamvxl.model import decoder  # noqa: E402
from streamvxl.model.shapes import random_model, videoxl_7b  # noqa: E402
from streamvxl.runtime import Runtime  # noqa: E402
from streamvxl.testing import make_tokenizer  # noqa: E402

events = []
orig = decoder.full_coverage_attention


def wrapped(q, k, v, kernels=None):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    out = orig(q, k, v, kernels)
    e.record()
    events.append((q.shape[2], s, e))
    return out


dev = torch.device("cuda")
model = random_model(*videoxl_7b(), dev, torch.bfloat16)
mem = make_memory(Runtime(model, make_tokenizer()), 16)
fill_memory(mem, 18432)
clip = frames(120, 360, 640)
with torch.no_grad():
    mem.extend(clip[:60])
    mem.flush()
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,power.draw,temperature.gpu",
                            "--format=csv,noheader", "-lms", "100"], stdout=subprocess.PIPE,
                           text=True)
    time.sleep(0.5)
    decoder.full_coverage_attention = wrapped
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(3):
        mem.extend(clip)
    mem.flush()
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    smi.terminate()
    samples = smi.communicate()[0].strip().splitlines()
big = [s.elapsed_time(e) for t, s, e in events if t > 1000]
print(f"extend 3 x 120 frames: {wall:.3f} s ({360 / wall:.1f} frames/s)")
print(f"attention calls (window-size): {len(big)}, mean {sum(big) / len(big):.3f} ms, "
      f"min {min(big):.3f}, max {max(big):.3f}")
print("nvidia-smi (sm clock, power, temp):", samples[:3], "...", samples[-12:])
