"""The training forward: what it computes and where its gradients go.

- Window-by-window encoding with one ratio equals `encode_interval` over the whole interval
  (so per-window ratios change nothing else).
- The loss equals a slow obvious reference: full logits over [question | answer], CE on the
  answer positions.
- Gradients flow through the carried VST K/V: a loss that sees an earlier interval only
  through the VSTs carried in memory still reaches that interval's raw tokens.
- Every trainable parameter gets a gradient (beacon_* and the vision tower included), and
  frozen parts get none.
- `plan_windows` tiles the tokens, draws ratios from the stage's set, and is deterministic.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from streamvxl.intervals import BoundaryConfig
from streamvxl.model.cache import ConcatCache
from streamvxl.model.encoder import encode_interval, encode_text
from streamvxl.model.videoxl import VideoXL, tiny_config
from streamvxl.preprocess import Preprocessor
from streamvxl.prompt import PromptTemplate
from streamvxl.testing import make_tokenizer, random_videoxl
from streamvxl.world import WorldConfig
from training.batch import TaskMix, WindowPlan, draw_sample, make_example, plan_windows
from training.forward import TrainModule, answer_loss, build_memory, example_loss
from training.recipe import set_trainable, unreachable_parameters
from training.recipe_config import RecipeConfig

BOUNDARY = BoundaryConfig(window=1, min_frames=2, max_frames=4, threshold=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def _example(tokenizer, seed: int = 0, frames: int = 8, ratios=(2, 4), mix: TaskMix | None = None):
    rng = np.random.default_rng(seed)
    world = WorldConfig(num_frames=frames, height=56, width=56, max_objects=2)
    sample = draw_sample(rng, world, mix or TaskMix(1.0, 0.0, 0.0), questions=2)
    return make_example(sample, tokenizer, PromptTemplate(), Preprocessor(56), ratios,
                        seed=seed, vocab_size=512)


def test_window_by_window_equals_encode_interval() -> None:
    torch.manual_seed(0)
    model = random_videoxl(0)
    tokens = torch.randn(1, 37, 64)  # 37 raw tokens -> windows of 16, 16, 5
    prefix = torch.tensor([5, 6, 7])
    plan = [WindowPlan(0, s, min(s + 16, 37), 4) for s in (0, 16, 32)]
    mem_k, mem_v, _ = build_memory(model, prefix, tokens, plan, window=16)
    sink = encode_text(model, None, None, prefix[None])
    whole = encode_interval(model, sink.keys, sink.values, tokens, 4, 16)
    torch.testing.assert_close(mem_k, torch.cat((sink.keys, whole.keys), dim=3))
    torch.testing.assert_close(mem_v, torch.cat((sink.values, whole.values), dim=3))
    assert mem_k.shape[3] == 3 + 4 + 4 + 2  # sink + ceil(16/4) + ceil(16/4) + ceil(5/4)


def test_answer_loss_matches_full_logits_reference() -> None:
    model = random_videoxl(1)
    mem = encode_text(model, None, None, torch.tensor([[3, 4, 5, 6]]))
    question, answer = torch.tensor([10, 11, 12]), torch.tensor([20, 21, 2])
    got = answer_loss(model, mem.keys, mem.values, question, answer)
    cache = ConcatCache(mem.keys, mem.values, model.config.llm.rope_theta)
    ids = torch.cat((question, answer))[None]
    hidden, _ = model.model.forward_chunk(model.embed_ids(ids), cache.length, cache)
    logits = model.logits(hidden)[0]  # (Q+A, V)
    want = sum(-torch.log_softmax(logits[2 + i], -1)[answer[i]] for i in range(3))
    torch.testing.assert_close(got, want)


def _three_layer_model() -> VideoXL:
    """The tiny shape with 3 decoder layers. (With 2, nothing of an earlier interval can reach
    a later interval's retained K/V: layer-0 VST K/V do not depend on the window, and the
    layer-1 memory only feeds layer-1 outputs, which only a layer 2 would project.)"""
    torch.manual_seed(2)
    cfg, vision = tiny_config()
    cfg = dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, num_hidden_layers=3))
    return VideoXL(cfg, vision)


def test_gradient_flows_through_carried_vst_kv() -> None:
    model = _three_layer_model()
    sink = encode_text(model, None, None, torch.tensor([[3, 4, 5]]))
    first = torch.randn(1, 12, 64, requires_grad=True)  # the earlier interval's raw tokens
    second = torch.randn(1, 12, 64)
    kv1 = encode_interval(model, sink.keys, sink.values, first, 4, 40)

    def second_interval_vsts(carried_k, carried_v):
        mem_k = torch.cat((sink.keys, carried_k), dim=3)
        mem_v = torch.cat((sink.values, carried_v), dim=3)
        kv2 = encode_interval(model, mem_k, mem_v, second, 4, 40)
        return kv2.keys.square().sum() + kv2.values.square().sum()

    # the second interval sees the first only through its VSTs' K/V (raw K/V were dropped)
    (grad,) = torch.autograd.grad(second_interval_vsts(kv1.keys, kv1.values), first)
    assert grad.abs().sum() > 0
    assert (grad.abs().sum(-1) > 0).all()  # every raw token of the first interval
    # control: cut the carried memory and nothing reaches the earlier interval
    loss = second_interval_vsts(kv1.keys.detach(), kv1.values.detach())
    assert not loss.requires_grad or torch.autograd.grad(loss, first, allow_unused=True)[0] is None


def test_answer_loss_reaches_the_earliest_window(tokenizer) -> None:
    """The full example forward: the first window's raw tokens get a gradient from the answer
    loss (through the memory), and so do the pixels of the first frame."""
    model = random_videoxl(3)
    example = _example(tokenizer, seed=4, frames=8)
    pixels = example.pixels.clone().requires_grad_(True)
    frames = model.encode_frames(pixels)
    n, t, c = frames.tokens.shape
    tokens = frames.tokens.reshape(1, n * t, c)
    tokens.retain_grad()
    plan = plan_windows(frames.embeddings, t, 16, BOUNDARY, example.ratios, example.seed)
    assert len({w.interval for w in plan}) >= 2
    mem_k, mem_v, _ = build_memory(model, example.prefix_ids, tokens, plan, 16)
    answer_loss(model, mem_k, mem_v, example.questions[0], example.answers[0]).backward()
    first = plan[0]
    assert tokens.grad[0, first.start:first.end].abs().sum(-1).gt(0).all()
    assert pixels.grad[0].abs().sum() > 0


def test_every_trainable_parameter_gets_a_gradient(tokenizer) -> None:
    model = random_videoxl(4).train()
    set_trainable(model, RecipeConfig())
    module = TrainModule(model, BOUNDARY, window=16)
    mix = TaskMix(1.0, 1.0, 1.0)
    for seed in range(3):  # a video, an image, an image set (whatever the draw gives)
        loss, counts = module(_example(tokenizer, seed=seed, mix=mix))
        assert counts.answer_tokens > 0 and loss.item() > 0
        (loss / counts.answer_tokens).backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    for part in ("beacon_q_proj", "beacon_k_proj", "beacon_v_proj", "beacon_embed_tokens",
                 "vision_tower", "mm_projector"):
        assert any(part in n for n in grads), part
    # what is left out is exactly what no loss can reach
    assert {n for n, p in model.named_parameters() if not p.requires_grad} \
        == unreachable_parameters(model)


def test_frozen_parts_get_no_gradient(tokenizer) -> None:
    model = random_videoxl(5).train()
    set_trainable(model, RecipeConfig(train_vision=False, train_projector=False))
    loss, _ = example_loss(model, _example(tokenizer), BOUNDARY, window=16)
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith(("model.vision_tower.", "model.mm_projector.")):
            assert p.grad is None, name
    assert model.model.beacon_embed_tokens.weight.grad is not None


def test_plan_windows_tiles_tokens_with_stage_ratios() -> None:
    rng = np.random.default_rng(0)
    emb = np.repeat(rng.normal(size=(4, 8)), [5, 3, 9, 2], axis=0)  # 4 scenes, 19 frames
    cfg = BoundaryConfig(window=1, min_frames=2, max_frames=6)
    plan = plan_windows(emb, tokens_per_frame=4, window=10, boundary=cfg,
                        ratios=(8, 12, 16), seed=7)
    assert plan[0].start == 0 and plan[-1].end == 19 * 4
    assert all(a.end == b.start for a, b in zip(plan[:-1], plan[1:], strict=True))
    assert all(0 < w.end - w.start <= 10 and w.ratio in (8, 12, 16) for w in plan)
    assert plan == plan_windows(emb, 4, 10, cfg, (8, 12, 16), seed=7)
    # intervals follow the detector: each closes at a frame boundary
    ends = [w.end for w, nxt in zip(plan, plan[1:] + [None], strict=True) if nxt is None
            or nxt.interval != w.interval]
    assert all(e % 4 == 0 for e in ends) and len(ends) >= 4
    draws = [w.ratio for s in range(20) for w in plan_windows(emb, 4, 10, cfg, (8, 12, 16), s)]
    assert set(draws) == {8, 12, 16}  # per-window draws cover the stage's set


def test_an_uncompressed_example_is_one_causal_forward(tokenizer) -> None:
    """ratios=() keeps every raw token: the example's loss is that of one causal forward over
    [prefix | all visual tokens | question | answer] -- the evaluation's ``full`` memory."""
    model = random_videoxl(2).double()
    example = _example(tokenizer, seed=3, ratios=())
    example = dataclasses.replace(example, pixels=example.pixels.double(),
                                  questions=example.questions[:1], answers=example.answers[:1],
                                  qa=example.qa[:1])
    with torch.no_grad():
        got, counts = example_loss(model, example, BOUNDARY, window=12)
        tokens = model.encode_frames(example.pixels).tokens.reshape(1, -1, 64)  # (1, N*T, C)
        q, a = example.questions[0], example.answers[0]
        embeds = torch.cat((model.embed_ids(example.prefix_ids[None]), tokens,
                            model.embed_ids(torch.cat((q, a))[None])), dim=1)
        cache = ConcatCache(None, None, model.config.llm.rope_theta)
        hidden, _ = model.model.forward_chunk(embeds, 0, cache)
        logits = model.logits(hidden)[0]  # (P + N*T + Q + A, V)
    first = example.prefix_ids.numel() + tokens.shape[1] + q.numel() - 1
    want = sum(-torch.log_softmax(logits[first + i], -1)[a[i]] for i in range(a.numel()))
    torch.testing.assert_close(got.double(), want, rtol=1e-9, atol=1e-9)
    plan = plan_windows(np.random.default_rng(0).normal(size=(8, 4)), 4, 12, BOUNDARY, (), 0)
    assert plan and all(w.ratio is None for w in plan) and plan[-1].end == 32


def test_groups_never_mix_compressed_and_uncompressed_memories(tokenizer) -> None:
    from training.forward import group_examples

    a, b, c = (_example(tokenizer, seed=s, ratios=r) for s, r in ((0, (2,)), (1, ()), (2, (4,))))
    assert group_examples([a, b, c], 8) == [[a, c], [b]]


def test_uncompressed_share_is_drawn_per_example() -> None:
    from training.recipe import DataSource

    cfg = RecipeConfig(uncompressed_share=0.5, frames=4, world={"height": 56, "width": 56})
    world = WorldConfig(num_frames=4, height=56, width=56)
    data = DataSource(cfg, world, make_tokenizer(), Preprocessor(56), 512)
    kinds = [bool(data.example(i, (2, 4)).ratios) for i in range(40)]
    assert 8 <= sum(kinds) <= 32, kinds  # about half compressed
    never = DataSource(dataclasses.replace(cfg, uncompressed_share=0.0), world,
                       make_tokenizer(), Preprocessor(56), 512)
    assert all(never.example(i, (2, 4)).ratios == (2, 4) for i in range(10))
    with pytest.raises(ValueError, match="uncompressed_share"):
        RecipeConfig(uncompressed_share=1.5)


def test_an_open_tail_leaves_only_the_last_interval_raw() -> None:
    rng = np.random.default_rng(0)
    emb = np.repeat(rng.normal(size=(3, 8)), [5, 4, 6], axis=0)  # 3 scenes, 15 frames
    cfg = BoundaryConfig(window=1, min_frames=2, max_frames=6)
    stored = plan_windows(emb, 4, 10, cfg, (2, 4), seed=3)
    live = plan_windows(emb, 4, 10, cfg, (2, 4), seed=3, open_tail=True)
    last = stored[-1].interval
    assert last >= 1 and [(w.interval, w.start, w.end) for w in live] == \
        [(w.interval, w.start, w.end) for w in stored]
    for a, b in zip(stored, live, strict=True):  # the others keep the ratios they drew
        assert b.ratio == (None if a.interval == last else a.ratio) and a.ratio is not None


def test_an_open_tail_example_is_asked_as_a_live_stream_is(tokenizer) -> None:
    """An open tail's loss is the live question's: [sink | the stored intervals' VSTs | the
    last interval's raw tokens | question | answer], the raw tail read in one causal forward
    with the question, as `Runtime.decode` prepends a stream's uncompressed frames to it."""
    model = random_videoxl(2).double()
    example = _example(tokenizer, seed=3)
    example = dataclasses.replace(example, pixels=example.pixels.double(),
                                  questions=example.questions[:1], answers=example.answers[:1],
                                  qa=example.qa[:1], open_tail=True)
    with torch.no_grad():
        got, _ = example_loss(model, example, BOUNDARY, window=12)
        closed, _ = example_loss(model, dataclasses.replace(example, open_tail=False),
                                 BOUNDARY, window=12)
        frames = model.encode_frames(example.pixels)
        tokens = frames.tokens.reshape(1, -1, 64)  # (1, N*T, C)
        t = frames.tokens.shape[1]
        plan = plan_windows(frames.embeddings, t, 12, BOUNDARY, example.ratios, example.seed)
        last = plan[-1].interval
        tail_start = min(w.start for w in plan if w.interval == last)
        assert last >= 1 and tail_start > 0
        mem_k, mem_v, _ = build_memory(model, example.prefix_ids, tokens,
                                       [w for w in plan if w.interval != last], 12)
        q, a = example.questions[0], example.answers[0]
        embeds = torch.cat((tokens[:, tail_start:], model.embed_ids(torch.cat((q, a))[None])),
                           dim=1)  # (1, n + Q + A, C)
        cache = ConcatCache(mem_k, mem_v, model.config.llm.rope_theta)
        hidden, _ = model.model.forward_chunk(embeds, cache.length, cache)
        logits = model.logits(hidden)[0]  # (n + Q + A, V)
    first = tokens.shape[1] - tail_start + q.numel() - 1
    want = sum(-torch.log_softmax(logits[first + i], -1)[a[i]] for i in range(a.numel()))
    torch.testing.assert_close(got.double(), want, rtol=1e-9, atol=1e-9)
    assert not torch.isclose(got, closed)  # the tail raw is another memory than the tail stored


def test_groups_never_mix_an_open_tail_with_a_stored_one(tokenizer) -> None:
    from training.forward import group_examples, group_loss

    a, b, c = (_example(tokenizer, seed=s) for s in range(3))
    b = dataclasses.replace(b, open_tail=True)
    assert group_examples([a, b, c], 8) == [[a, c], [b]]
    with pytest.raises(ValueError, match="open tail"):
        group_loss(random_videoxl(0), [a, b], BOUNDARY, 12)


def test_open_tail_share_is_drawn_per_compressed_video() -> None:
    from training.recipe import DataSource

    cfg = RecipeConfig(open_tail_share=0.5, uncompressed_share=0.2, frames=4,
                       world={"height": 56, "width": 56},
                       mix=TaskMix(0.5, 0.3, 0.2))
    world = WorldConfig(num_frames=4, height=56, width=56)
    data = DataSource(cfg, world, make_tokenizer(), Preprocessor(56), 512)
    drawn = [data.example(i, (2, 4)) for i in range(60)]
    videos = [e for e in drawn if e.kind == "video" and e.ratios]
    assert 0.2 * len(videos) <= sum(e.open_tail for e in videos) <= 0.8 * len(videos)
    # a still, an image set or an uncompressed memory is never a stream left open
    assert not any(e.open_tail for e in drawn if e.kind != "video" or not e.ratios)
    # the share draws from a stream of its own: everything else is as without it
    none = DataSource(dataclasses.replace(cfg, open_tail_share=0.0), world, make_tokenizer(),
                      Preprocessor(56), 512)
    for i, e in enumerate(drawn):
        f = none.example(i, (2, 4))
        assert not f.open_tail and f.ratios == e.ratios and f.seed == e.seed
        assert torch.equal(f.pixels, e.pixels) and f.qa == e.qa
    with pytest.raises(ValueError, match="open_tail_share"):
        RecipeConfig(open_tail_share=-0.1)


def test_docstring_examples() -> None:
    import doctest

    import training.batch

    assert doctest.testmod(training.batch).failed == 0
