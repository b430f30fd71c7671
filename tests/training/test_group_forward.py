"""Grouped (batched) training forwards and prefetched data change no number.

- A group of examples run as one batch, with a shared window plan, has the loss and the
  gradients of the examples run one by one with that plan (float64).
- Answers of different lengths, right-padded in one batch, give the per-answer losses.
- `group_examples` groups by frame count, keeps order, and caps the group size (and, given,
  its frames).
- Prefetching workers give the exact losses of in-process rendering.
- Each answer's own loss, tagged "kind/task", adds up to the group's loss, and a step's
  per-task means weighted by their tokens give the step's loss.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamvxl.intervals import BoundaryConfig
from streamvxl.preprocess import Preprocessor
from streamvxl.prompt import PromptTemplate
from streamvxl.testing import make_tokenizer, random_videoxl
from streamvxl.world import WorldConfig
from training.batch import TaskMix, WindowPlan, draw_sample, make_example
from training.forward import answer_loss, answers_loss, group_examples, group_loss, task_keys
from training.recipe import TASK_KEYS, train
from training.recipe_config import RecipeConfig

BOUNDARY = BoundaryConfig(window=1, min_frames=2, max_frames=4, threshold=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def _example(tokenizer, seed: int, frames: int = 6, mix: TaskMix | None = None):
    rng = np.random.default_rng(seed)
    world = WorldConfig(num_frames=frames, height=56, width=56, max_objects=2)
    sample = draw_sample(rng, world, mix or TaskMix(1.0, 0.0, 0.0), questions=2)
    return make_example(sample, tokenizer, PromptTemplate(), Preprocessor(56), (2, 4),
                        seed=seed, vocab_size=512)


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def test_group_equals_examples_one_by_one(tokenizer) -> None:
    model = random_videoxl(3).double().train()
    examples = [_example(tokenizer, s) for s in range(3)]
    for e in examples:
        e.pixels = e.pixels.double()
    # 6 frames x 4 tokens: two windows of ratio 2 and 4, the second split mid-frame
    plan = [WindowPlan(0, 0, 14, 2), WindowPlan(0, 14, 16, 4), WindowPlan(1, 16, 24, 4)]
    loss, counts = group_loss(model, examples, BOUNDARY, window=16, plan=plan)
    loss.backward()
    together = _grads(model)
    alone, total_tokens = torch.zeros((), dtype=torch.float64), 0
    for e in examples:
        one, c = group_loss(model, [e], BOUNDARY, window=16, plan=plan)
        one.backward()
        alone = alone + one.detach()
        total_tokens += c.llm_tokens
    separate = _grads(model)
    torch.testing.assert_close(loss.detach().double(), alone, rtol=1e-10, atol=1e-10)
    assert together.keys() == separate.keys() and together
    for name in together:
        torch.testing.assert_close(together[name], separate[name], rtol=1e-9, atol=1e-10)
    assert counts.llm_tokens == total_tokens
    assert counts.answer_tokens == sum(e.num_answer_tokens for e in examples)


def test_padded_answers_equal_their_own_losses() -> None:
    model = random_videoxl(1).double()
    g = model.config.llm.num_key_value_heads
    d = model.config.llm.hidden_size // model.config.llm.num_attention_heads
    layers = model.config.llm.num_hidden_layers
    mem_k = torch.randn(layers, 2, g, 5, d, dtype=torch.float64)  # (L, B, G, M, D)
    mem_v = torch.randn(layers, 2, g, 5, d, dtype=torch.float64)
    questions = [torch.tensor([5, 6, 7]), torch.tensor([8]), torch.tensor([9, 10, 11, 12, 13])]
    answers = [torch.tensor([20, 21]), torch.tensor([22, 23, 24, 25]), torch.tensor([26])]
    owner = torch.tensor([1, 0, 1])
    got = answers_loss(model, mem_k, mem_v, questions, answers, owner)
    want = sum(answer_loss(model, mem_k[:, [o]], mem_v[:, [o]], q, a)
               for q, a, o in zip(questions, answers, owner.tolist(), strict=True))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_group_examples_by_frame_count(tokenizer) -> None:
    mix = TaskMix(1.0, 1.0, 1.0)
    examples = [_example(tokenizer, s, frames=5, mix=mix) for s in range(12)]
    groups = group_examples(examples, 3)
    assert sorted(id(e) for g in groups for e in g) == sorted(id(e) for e in examples)
    for g in groups:
        assert 1 <= len(g) <= 3
        assert len({e.pixels.shape for e in g}) == 1
        positions = [next(i for i, x in enumerate(examples) if x is e) for e in g]
        assert positions == sorted(positions)  # order kept within a group
    assert all(len(g) == 1 for g in group_examples(examples, 1))


def test_a_frame_cap_splits_long_groups_only(tokenizer) -> None:
    long = [_example(tokenizer, s, frames=6) for s in range(5)]
    short = [_example(tokenizer, s, frames=2) for s in range(5, 10)]
    groups = group_examples(long + short, 4, max_frames=12)
    assert [len(g) for g in groups] == [2, 2, 1, 4, 1]  # 6-frame videos 2 a group, 2-frame 4
    assert group_examples(long, 4, max_frames=3) == [[e] for e in long]  # never empty


def test_prefetching_workers_keep_the_numbers(tmp_path) -> None:
    def run(name: str, **kw) -> list[float]:
        cfg = RecipeConfig(stages=((3, (2, 4)),), batch=4, micro_batch=2, frames=6, lr=1e-3,
                           warmup_steps=0, output_dir=str(tmp_path / name), device="cpu", **kw)
        return [r["loss"] for r in train(cfg)]

    # same examples in the same order: bit-identical losses
    assert run("prefetch", workers=2) == run("in_process")


@pytest.mark.parametrize("schedule", ["layers", "windows"])
def test_answer_losses_per_task_add_up(tokenizer, schedule: str) -> None:
    model = random_videoxl(3).double()
    examples = [_example(tokenizer, s) for s in range(2)]
    for e in examples:
        e.pixels = e.pixels.double()
    plan = [WindowPlan(0, 0, 12, 2), WindowPlan(1, 12, 24, 4)]
    loss, counts = group_loss(model, examples, BOUNDARY, window=16, plan=plan,
                              schedule=schedule)
    [(keys, rows, lengths)] = counts.task_losses
    assert keys == [f"video/{qa.task}" for e in examples for qa in e.qa] == task_keys(examples)
    assert lengths == [a.numel() for e in examples for a in e.answers]
    assert rows.shape == (len(keys),) and not rows.requires_grad
    torch.testing.assert_close(rows.sum(), loss.detach(), rtol=1e-12, atol=1e-12)
    # each row is that answer's loss on its own (one example, one QA, the same plan)
    first = examples[0]
    first.questions, first.answers, first.qa = first.questions[:1], first.answers[:1], \
        first.qa[:1]
    alone, _ = group_loss(model, [first], BOUNDARY, window=16, plan=plan, schedule=schedule)
    torch.testing.assert_close(rows[0], alone.detach(), rtol=1e-10, atol=1e-12)


def test_step_rows_hold_the_loss_per_task(tmp_path) -> None:
    mix = TaskMix(video=0.5, image=0.2, multi_image=0.1, reading=0.2)
    cfg = RecipeConfig(stages=((2, (2, 4)),), batch=6, micro_batch=3, frames=6, lr=1e-3,
                       warmup_steps=0, output_dir=str(tmp_path), device="cpu", mix=mix)
    for row in train(cfg):
        losses, tokens = row["task_loss"], row["task_tokens"]
        assert losses and losses.keys() == tokens.keys() <= set(TASK_KEYS)
        assert sum(tokens.values()) == row["answer_tokens"]
        weighted = sum(losses[k] * tokens[k] for k in losses) / row["answer_tokens"]
        assert weighted == pytest.approx(row["loss"], rel=1e-6)  # float32 sums
