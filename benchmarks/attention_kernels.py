"""Which attention kernel for an interval-encoder window: q = one window, k = memory + window.

Times SDPA backends on the window's shape (H query heads, G kv heads) and reports TFLOP/s:
flash with bottom-right causal (CausalBias) and GQA; cuDNN and flash on the memory part without a
mask (K/V repeated to H heads where the backend lacks GQA); and the split form (memory part + a
square causal window part merged by log-sum-exp) when the backend returns the LSE.

    python benchmarks/attention_kernels.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import causal_lower_right

H, G, D = 28, 4, 128


def bench(fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps / 1e3


def main() -> None:
    for t, m in [(1530, 2048), (1530, 18432), (1530, 65536)]:
        measure(t, m)


def measure(t: int, m: int) -> None:
    dev, dt = "cuda", torch.bfloat16
    q = torch.randn(1, H, t, D, device=dev, dtype=dt)
    k = torch.randn(1, G, m + t, D, device=dev, dtype=dt)
    v = torch.randn_like(k)
    flops = 4 * t * (m + t / 2) * H * D
    rows = {}
    mask = causal_lower_right(t, m + t)
    rows["flash GQA bottom-right (current)"] = lambda: F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, enable_gqa=True)
    km, vm = k[:, :, :m], v[:, :, :m]
    kr, vr = km.repeat_interleave(H // G, 1), vm.repeat_interleave(H // G, 1)
    for name, backend, kk, vv, gqa in [
        ("memory part: flash GQA no mask", SDPBackend.FLASH_ATTENTION, km, vm, True),
        ("memory part: cuDNN, K/V repeated", SDPBackend.CUDNN_ATTENTION, kr, vr, False),
        ("memory part: cuDNN GQA", SDPBackend.CUDNN_ATTENTION, km, vm, True),
        ("memory part: efficient, K/V repeated", SDPBackend.EFFICIENT_ATTENTION, kr, vr,
         False),
    ]:
        def run(backend=backend, kk=kk, vv=vv, gqa=gqa):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, kk, vv, enable_gqa=gqa)
        rows[name] = run
    # GQA packing: the memory part has no mask, so the H/G query heads that share a K/V head
    # can stand in one sequence of (H/G)*t queries over that head's keys (exact)
    qc = q.contiguous()
    qp = qc.view(1, G, (H // G) * t, D)
    for name, op in [("memory part: cuDNN, GQA packed", "cudnn"),
                     ("memory part: flash, GQA packed", "flash")]:
        def packed(op=op):
            if op == "cudnn":
                return torch.ops.aten._scaled_dot_product_cudnn_attention(
                    qp, km, vm, None, True, 0.0, False, False)
            return torch.ops.aten._scaled_dot_product_flash_attention(qp, km, vm, 0.0, False)
        rows[name] = packed
    qt = torch.randn(1, t, H, D, device=dev, dtype=dt).transpose(1, 2)  # the model's layout
    rows["memory part: cuDNN op GQA, q (B,T,H,D) strides"] = lambda: torch.ops.aten.\
        _scaled_dot_product_cudnn_attention(qt, km, vm, None, True, 0.0, False, False)
    rows["memory part: cuDNN op GQA, q contiguous"] = lambda: torch.ops.aten.\
        _scaled_dot_product_cudnn_attention(qc, km, vm, None, True, 0.0, False, False)
    rows["repeat K/V to H heads (copy)"] = lambda: (km.repeat_interleave(H // G, 1),
                                                    vm.repeat_interleave(H // G, 1))
    try:
        out = torch.ops.aten._scaled_dot_product_cudnn_attention(
            q, kr, vr, None, True, 0.0, False, False)
        rows["cuDNN op with LSE (memory part)"] = lambda: torch.ops.aten.\
            _scaled_dot_product_cudnn_attention(q, kr, vr, None, True, 0.0, False, False)
        print("cudnn op outputs:", [tuple(o.shape) if torch.is_tensor(o) else o
                                    for o in out[:3]])
    except Exception as e:  # noqa: BLE001 - report what this build supports
        print("cudnn op with LSE unavailable:", type(e).__name__, str(e)[:200])
    print(f"\nt={t} m={m}: {flops / 1e12:.2f} TFLOP (memory part {4*t*m*H*D/1e12:.2f})")
    for name, fn in rows.items():
        try:
            s = bench(fn)
            part = 4 * t * m * H * D if name.startswith("memory") or "LSE" in name else flops
            part = 0 if "copy" in name else part
            print(f"  {name:<40} {s * 1e3:8.3f} ms  {part / s / 1e12:7.1f} TFLOP/s")
        except Exception as e:  # noqa: BLE001
            print(f"  {name:<40} unsupported: {type(e).__name__}: {str(e)[:120]}")


if __name__ == "__main__":
    main()
