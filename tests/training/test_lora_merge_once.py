"""`merge_once`: an adapted layer merges W0 + B A once per forward, not once per chunk call.

- The loss is bitwise the per-call loss (float32, and under bfloat16 autocast), the gradients
  equal it to rounding.
- Each adapted layer merges once per forward (per compute dtype) instead of once per chunk.
- Under autocast the backward keeps one half-precision copy of each merged weight, not one per
  chunk: counted with saved-tensor hooks (what a GPU's activation memory holds).
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from streamvxl.testing import random_videoxl
from training.batch import WindowPlan
from training.forward import layer_major_loss
from training.lora import LoRALinear, add_lora, lora_modules, merge_once

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
           "beacon_q_proj", "beacon_k_proj", "beacon_v_proj")
# 3 windows: with the prompt and the answers, every layer runs 5 chunks
PLAN = [WindowPlan(0, 0, 8, 2), WindowPlan(0, 8, 16, 4), WindowPlan(1, 16, 24, 4)]


def _model():
    model = random_videoxl(0).train()
    add_lora(model, TARGETS, rank=4, seed=1)
    with torch.no_grad():  # adapters that change the weights (B starts at zero)
        for m in lora_modules(model).values():
            m.lora_B.normal_(0.0, 0.05)
    return model


def _loss(model, merged: bool, autocast: bool = False) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 24, 64, generator=gen)  # (B, N*T, C)
    questions = [torch.tensor([5, 6, 7]), torch.tensor([8, 9])]
    answers = [torch.tensor([20, 21]), torch.tensor([22])]
    owner = torch.tensor([0, 1])
    scope = merge_once(model) if merged else contextlib.nullcontext()
    amp = torch.autocast("cpu", torch.bfloat16) if autocast else contextlib.nullcontext()
    with scope, amp:
        loss, _, _ = layer_major_loss(model, torch.tensor([1, 2, 3]), tokens, PLAN, questions,
                                      answers, owner)
    return loss


@pytest.mark.parametrize("autocast", [False, True])
def test_same_loss_and_gradients(autocast: bool) -> None:
    model = _model()
    grads = []
    losses = []
    for merged in (False, True):
        loss = _loss(model, merged, autocast)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
        model.zero_grad(set_to_none=True)
    assert torch.equal(losses[0], losses[1])  # the same merges, the same rounding
    assert grads[0].keys() == grads[1].keys() and any("lora_A" in n for n in grads[0])
    tol = 1e-2 if autocast else 1e-5  # summed in another order: relative to the norm
    for name, g in grads[0].items():
        assert (grads[1][name] - g).norm() <= tol * g.norm(), name
    assert all(m.merged_cache is None for m in lora_modules(model).values())  # scope closed


def test_each_layer_merges_once(monkeypatch) -> None:
    model = _model()
    calls: list[int] = []
    merged_weight = LoRALinear.merged_weight
    monkeypatch.setattr(LoRALinear, "merged_weight",
                        lambda self: (calls.append(id(self)), merged_weight(self))[1])
    _loss(model, merged=False)
    per_call = len(calls)
    calls.clear()
    _loss(model, merged=True)
    assert len(calls) == len(set(calls))  # no module merged twice
    assert per_call > 3 * len(calls)  # 5 chunks; VST projections run on the 3 windows only


def test_backward_keeps_one_copy_of_each_merged_weight() -> None:
    model = _model()
    sizes = {m.weight.numel() for m in lora_modules(model).values()}

    def weight_copies(merged: bool) -> int:
        saved: dict[int, torch.Tensor] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            # a weight may be saved transposed (a view): count storages of weight size
            if t.dtype == torch.bfloat16 and t.numel() in sizes:
                saved[t.untyped_storage().data_ptr()] = t
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _loss(model, merged, autocast=True)
        return len(saved)

    per_call, once = weight_copies(False), weight_copies(True)
    n_used = len(lora_modules(model)) - 1  # the last layer's beacon_q_proj runs on no chunk
    assert once == n_used
    assert per_call > 3 * once  # 5 chunks; VST projections run on the 3 windows only
