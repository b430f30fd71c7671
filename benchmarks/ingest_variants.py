"""Where ingest time goes, and which candidate optimisations pay: side by side in one run.

    python benchmarks/ingest_variants.py [--vsts 18432] [--ratio 16]     # on the GPU
    python benchmarks/ingest_variants.py --tiny                         # CPU smoke run

Times, at Video-XL-7B shapes with ``--vsts`` VSTs in memory: preprocessing, the vision tower
(HF's full forward vs the truncated tower vs torch.compile of it), one interval-encoder window
with each candidate switched on alone (fused SiLU-gate product, compiled RoPE), then
``extend`` of 120 frames with all off / all on, and a kernel profile of one ``extend``.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpu_bench import fill_memory, frames, make_memory, timed  # noqa: E402
from streamvxl.model import decoder, rope, tiny_config  # noqa: E402
from streamvxl.model.encoder import encode_interval  # noqa: E402
from streamvxl.model.shapes import random_model, videoxl_7b  # noqa: E402
from streamvxl.runtime import Runtime  # noqa: E402
from streamvxl.testing import make_tokenizer  # noqa: E402


@contextmanager
def fused_mlp():
    silu_mul = torch.compile(lambda g, u: F.silu(g) * u, dynamic=False)
    orig = decoder.MLP.forward
    decoder.MLP.forward = lambda self, x: self.down_proj(silu_mul(self.gate_proj(x),
                                                                  self.up_proj(x)))
    try:
        yield
    finally:
        decoder.MLP.forward = orig


@contextmanager
def compiled_rope():
    orig = rope.apply_rope
    rope.apply_rope = torch.compile(orig, dynamic=False)
    try:
        yield
    finally:
        rope.apply_rope = orig


@contextmanager
def nothing():
    yield


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--vsts", type=int, default=18432)
    p.add_argument("--ratio", type=int, default=16)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--no-profile", action="store_true")
    args = p.parse_args()
    dev = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    cfg, vision = tiny_config() if args.tiny else videoxl_7b()
    h, w = (48, 64) if args.tiny else (360, 640)
    vsts = 64 if args.tiny else args.vsts
    model = random_model(cfg, vision, dev, dtype)
    hidden = cfg.llm.hidden_size
    mem = make_memory(Runtime(model, make_tokenizer()), args.ratio)
    fill_memory(mem, vsts)
    clip = frames(120, h, w)

    def row(name: str, fn, repeats: int = 5) -> None:
        fn()  # warm-up (and compilation)
        fn()
        t = timed(fn, dev, repeats)
        print(f"{name:<52} {t * 1000:9.2f} ms", flush=True)

    tower = model.model.vision_tower
    with torch.no_grad():
        mem.extend(clip[:60])
        mem.flush()
        pixels = mem.preprocessor(clip[:20], dev, model.dtype)
        row("preprocess 20 frames", lambda: mem.preprocessor(clip[:20], dev, model.dtype))
        row("vision 20 frames: HF full forward (before)", lambda: tower.vision_tower(
            pixels, output_hidden_states=True).hidden_states[tower.select_layer])
        row("vision 20 frames: truncated tower", lambda: tower(pixels))
        compiled_tower = torch.compile(tower, dynamic=False)
        row("vision 20 frames: torch.compile(truncated)", lambda: compiled_tower(pixels))
        row("vision+projector+pool 20 frames", lambda: model.encode_frames(pixels))
        tokens = model.encode_frames(pixels).tokens[:10].reshape(1, -1, hidden)
        k, v = mem.state.store.keys(), mem.state.store.values()
        window = cfg.vst.window
        for label, ctx in (("eager", nothing), ("fused SiLU*up (compiled)", fused_mlp),
                           ("compiled RoPE", compiled_rope)):
            with ctx():
                row(f"window (10 frames, ConcatCache): {label}", lambda: encode_interval(
                    model, k, v, tokens, args.ratio, window))
        row("extend 120 frames: as shipped", lambda: mem.extend(clip), 3)
        with fused_mlp(), compiled_rope():
            row("extend 120 frames: fused MLP + compiled RoPE", lambda: mem.extend(clip), 3)
        if not args.no_profile and dev.type == "cuda":
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                mem.extend(clip)
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=45,
                                            max_name_column_width=70))
    print(f"{vsts} VSTs in memory at the start, r={args.ratio}")


if __name__ == "__main__":
    main()
