"""Layer-major training forward == window-major (the inference order), in float64.

`layer_major_loss` runs each decoder layer once over [prompt | windows | answers]; the window
order (`build_memory` + `answers_loss`) runs the whole decoder per window. They must give the
same loss, the same memory (sink + VST K/V per layer) and the same gradient for every
parameter, for groups of examples, mixed ratios, an uncompressed window, windows cut mid-frame
and a memory that several answers read. And each decoder layer must be *called* once per
forward (what lets FSDP gather one layer at a time), however many windows there are.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from streamvxl.intervals import BoundaryConfig
from streamvxl.model.videoxl import VideoXL, tiny_config
from streamvxl.preprocess import Preprocessor
from streamvxl.prompt import PromptTemplate
from streamvxl.testing import make_tokenizer, random_videoxl
from streamvxl.world import WorldConfig
from training.batch import TaskMix, WindowPlan, draw_sample, make_example
from training.forward import TrainModule, answers_loss, build_memory, group_loss, layer_major_loss

BOUNDARY = BoundaryConfig(window=1, min_frames=2, max_frames=4, threshold=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def _deep_model(seed: int) -> VideoXL:
    """3 layers: in 2, layer-0 VST K/V do not depend on content (a weaker test)."""
    cfg, vision = tiny_config()
    cfg = dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, num_hidden_layers=3))
    torch.manual_seed(seed)
    model = VideoXL(cfg, vision)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((0.08 if p.ndim >= 2 and "embed" not in name else 0.05) * torch.randn_like(p)
                    + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return model.double().train()


def _example(tokenizer, seed: int, frames: int = 6):
    rng = np.random.default_rng(seed)
    world = WorldConfig(num_frames=frames, height=56, width=56, max_objects=2)
    sample = draw_sample(rng, world, TaskMix(1.0, 0.0, 0.0), questions=2)
    example = make_example(sample, tokenizer, PromptTemplate(), Preprocessor(56), (2, 4),
                           seed=seed, vocab_size=512)
    example.pixels = example.pixels.double()
    return example


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


# 6 frames x 4 tokens: ratio 2 and 4, a window cut mid-frame, one uncompressed window, r = 3
# leaving a partial group
PLAN = [WindowPlan(0, 0, 7, 2), WindowPlan(0, 7, 16, 3), WindowPlan(1, 16, 20, None),
        WindowPlan(2, 20, 24, 4)]


@pytest.mark.parametrize("group", [1, 3])
def test_layer_major_equals_window_major(tokenizer, group: int) -> None:
    model = _deep_model(1)
    examples = [_example(tokenizer, s) for s in range(group)]
    losses, grads = {}, {}
    for schedule in ("windows", "layers"):
        loss, counts = group_loss(model, examples, BOUNDARY, window=16, plan=PLAN,
                                  schedule=schedule)
        loss.backward()
        losses[schedule], grads[schedule] = loss.detach(), _grads(model)
        assert counts.memory_tokens == group * (model_prefix(examples) + 4 + 3 + 4 + 1)
    torch.testing.assert_close(losses["layers"], losses["windows"], rtol=1e-12, atol=1e-12)
    assert grads["layers"].keys() == grads["windows"].keys()
    assert any("beacon_k_proj" in n for n in grads["layers"])  # VST paths reached
    assert any("vision_tower" in n for n in grads["layers"])
    for name, g in grads["windows"].items():
        torch.testing.assert_close(grads["layers"][name], g, rtol=1e-9, atol=1e-12, msg=name)


def model_prefix(examples) -> int:
    return examples[0].prefix_ids.numel()


def test_layer_major_memory_is_the_window_major_memory() -> None:
    model = _deep_model(2).eval()
    torch.manual_seed(0)
    tokens = torch.randn(2, 24, 64, dtype=torch.float64)  # (B, N*T, C)
    prefix = torch.tensor([5, 6, 7, 8])
    questions = [torch.tensor([9, 10]), torch.tensor([11]), torch.tensor([12, 13, 14])]
    answers = [torch.tensor([20]), torch.tensor([21, 22, 23]), torch.tensor([24, 25])]
    owner = torch.tensor([1, 0, 1])
    with torch.no_grad():
        want_k, want_v, _ = build_memory(model, prefix, tokens, PLAN, window=16)
        want = answers_loss(model, want_k, want_v, questions, answers, owner)
        got, got_k, got_v = layer_major_loss(model, prefix, tokens, PLAN, questions, answers,
                                             owner)
    assert got_k.shape == want_k.shape == (3, 2, 2, 4 + 4 + 3 + 4 + 1, 16)
    torch.testing.assert_close(got_k, want_k, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_v, want_v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_each_decoder_layer_is_called_once_per_forward(tokenizer) -> None:
    model = random_videoxl(0).train()
    sequence_calls: list[int] = []
    module_calls: list[int] = []
    for i, layer in enumerate(model.model.layers):
        run = layer.forward_sequence
        layer.forward_sequence = lambda *a, i=i, run=run: (sequence_calls.append(i), run(*a))[1]
        layer.register_forward_pre_hook(lambda *_, i=i: module_calls.append(i))
    module = TrainModule(model, BOUNDARY, window=8)  # 6 frames x 4 tokens: >= 3 windows
    example = _example(tokenizer, 0)
    example.pixels = example.pixels.float()
    loss, counts = module(example)
    assert counts.windows >= 3
    assert sequence_calls == [0, 1]  # one (FSDP-hooked) method call per layer
    assert module_calls == []  # no per-chunk module calls, where per-call hooks would fire
    loss.backward()
