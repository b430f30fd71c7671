"""The forward pass keeps one dtype under autocast (training runs in bf16 autocast on GPUs)."""

from __future__ import annotations

import torch

from streamvxl.model.encoder import encode_interval, encode_text
from streamvxl.testing import random_videoxl


def test_text_and_interval_encoding_under_cpu_autocast() -> None:
    model = random_videoxl(seed=2)
    with torch.autocast("cpu", torch.bfloat16):
        sink = encode_text(model, None, None, torch.tensor([[3, 4, 5, 6]]))
        kv = encode_interval(model, sink.keys, sink.values, torch.randn(1, 20, 64), 4, 12)
    assert sink.keys.dtype == kv.keys.dtype == torch.bfloat16
    assert torch.isfinite(kv.keys).all()
