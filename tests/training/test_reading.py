"""Reading labels and the auxiliary reading loss.

- The labels put each glyph centre in its own (cell, column) slot: by hand, and on random
  frames one-hot labels spell back exactly the visible text, at streamvxl-tiny's 16 px cells
  and the test model's 28 px ones.
- A sample's labels are its frames' labels in order (video, still, image set).
- `reading_loss` is the class-weighted mean cross-entropy, checked against an explicit float64
  sum; `signs_read` counts a frame only when its whole text is read.
- `group_loss` with a reading head adds exactly weight x answer tokens x the head's loss on the
  visual tokens, and that term's gradient reaches the projector.
- A recipe run with ``reading_loss`` logs the head's loss and reading rate (which learn), its
  checkpoint keeps the head apart from the model (which still loads), and resuming gives the
  uninterrupted run's losses exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from streamvxl.intervals import BoundaryConfig
from streamvxl.model.loading import load_videoxl
from streamvxl.preprocess import Preprocessor
from streamvxl.prompt import PromptTemplate
from streamvxl.testing import make_tokenizer, random_videoxl
from streamvxl.world import WorldConfig, sample_episode
from streamvxl.world.scene import Backdrop, Episode, Scene, Sign
from training.batch import TaskMix, WindowPlan, draw_sample, make_example
from training.checkpoint import HEADS_FILE
from training.forward import TrainModule, group_loss
from training.reading import (
    CHAR_WEIGHT,
    CHARS,
    READ_SLOTS,
    ReadingHead,
    read_text,
    reading_labels,
    reading_loss,
    sample_reading_labels,
    signs_read,
    slots_for,
    token_cell,
)
from training.recipe import train
from training.recipe_config import config_from_dict

K = 1 + len(CHARS)


def _visible_text(episode: Episode, t: int) -> str:
    return "".join(s.text.upper() for s in episode.signs if s.visible(t))


def test_slots_are_at_most_four_pixels_wide() -> None:
    assert slots_for(16) == READ_SLOTS == 4
    assert slots_for(28) == 7 and slots_for(30) == 8 and slots_for(1) == 1
    with pytest.raises(ValueError, match="cell"):
        slots_for(0)


def test_reading_labels_place_glyph_centres_by_hand() -> None:
    """A sign "7A" at x=13, y=3, scale 1: glyph centres at x = 13 + 2 + 2.5 = 17.5 and 23.5
    (cell 1 of 16 px, columns 0 and 1 of 4 px), y = 3 + 2 + 3.5 = 8.5 (cell row 0)."""
    scenes = (Scene(0, Backdrop("solid", ((120, 120, 120), (120, 120, 120)))),)
    episode = Episode(1, 1.0, 64, 64, scenes, (), (Sign("7A", t_in=0, t_out=1, x=13, y=3),))
    got = reading_labels(episode, 0, cell=16)
    want = np.zeros((16, READ_SLOTS), dtype=np.int64)
    want[1, 0] = CHARS.index("7") + 1
    want[1, 1] = CHARS.index("A") + 1
    assert np.array_equal(got, want)
    later = Episode(2, 1.0, 64, 64, scenes, (), (Sign("7A", 1, 2, 13, 3),))
    assert not reading_labels(later, 0, cell=16).any()  # not visible on frame 0


@pytest.mark.parametrize("size, cell", [(64, 16), (56, 28)])
def test_one_hot_labels_spell_every_visible_sign(size: int, cell: int) -> None:
    world = WorldConfig(num_frames=8, height=size, width=size, sign_prob=1.0, max_signs=2)
    rng = np.random.default_rng(5)
    signed = 0
    for _ in range(12):
        episode = sample_episode(rng, world)
        for t in range(episode.num_frames):
            labels = torch.from_numpy(reading_labels(episode, t, cell))  # (T, S)
            assert labels.shape == ((size // cell) ** 2, slots_for(cell))
            one_hot = torch.nn.functional.one_hot(labels, K).float()[None]
            assert read_text(one_hot) == [_visible_text(episode, t)]
            signed += bool(_visible_text(episode, t))
    assert signed >= 20


@pytest.mark.parametrize("mix", [TaskMix(1.0, 0.0, 0.0), TaskMix(0.0, 1.0, 0.0),
                                 TaskMix(0.0, 0.0, 1.0), TaskMix(0, 0, 0, reading=1.0)])
def test_sample_labels_are_its_frames_labels_in_order(mix: TaskMix) -> None:
    world = WorldConfig(num_frames=6, height=64, width=64, sign_prob=1.0)
    sample = draw_sample(np.random.default_rng(2), world, mix)
    got = sample_reading_labels(sample, 16)
    assert got.shape == (len(sample.frames), 16, READ_SLOTS) and got.dtype == torch.int64
    want = [reading_labels(ep, t, 16) for ep in sample.episodes for t in range(ep.num_frames)]
    assert np.array_equal(got.numpy(), np.stack(want))
    example = make_example(sample, make_tokenizer(), PromptTemplate(), Preprocessor(64), (2,),
                           seed=0, vocab_size=512, reading_cell=16)
    assert torch.equal(example.reading, got)
    assert make_example(sample, make_tokenizer(), PromptTemplate(), Preprocessor(64), (2,),
                        seed=0, vocab_size=512).reading is None


def test_a_video_with_an_outage_is_labelled_on_the_frames_that_came() -> None:
    """With the camera offline the sample holds only the delivered frames; each gets its own
    frame's labels (a sign shown after the outage keeps its place)."""
    world = WorldConfig(num_frames=24, height=64, width=64, sign_prob=1.0, offline_prob=1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        sample = draw_sample(rng, world, TaskMix(1.0, 0.0, 0.0))
        (episode,) = sample.episodes
        if len(sample.frames) < episode.num_frames:
            break
    else:
        raise AssertionError("no outage drawn in 20 videos")
    got = sample_reading_labels(sample, 16)
    want = [reading_labels(episode, int(t), 16) for t in episode.delivered()]
    assert len(got) == len(sample.frames) < episode.num_frames
    assert np.array_equal(got.numpy(), np.stack(want))


def test_reading_loss_is_the_weighted_mean_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 2, K, generator=g, dtype=torch.float64)
    labels = torch.randint(0, K, (3, 4, 2), generator=g)
    labels[0] = 0  # plenty of empty slots, as on real frames
    log_p = torch.log_softmax(logits, -1)
    num, den = 0.0, 0.0
    for idx in np.ndindex(*labels.shape):
        y = int(labels[idx])
        w = 1.0 if y == 0 else CHAR_WEIGHT
        num -= w * float(log_p[idx][y])
        den += w
    assert reading_loss(logits, labels).item() == pytest.approx(num / den, rel=1e-12)


def test_signs_read_counts_whole_texts_only() -> None:
    labels = torch.zeros(3, 2, 2, dtype=torch.long)
    labels[0, 0, 0], labels[0, 1, 1] = 3, 5  # frame 0: a two-character sign
    labels[1, 1, 0] = 7  # frame 1: one character; frame 2: no sign
    logits = torch.nn.functional.one_hot(labels, K).float()
    read, signed = signs_read(logits, labels)
    assert (int(read), int(signed)) == (2, 2)
    logits[0, 1, 1] = torch.nn.functional.one_hot(torch.tensor(6), K).float()  # one wrong
    logits[2, 0, 0] = torch.nn.functional.one_hot(torch.tensor(4), K).float()  # a ghost
    read, signed = signs_read(logits, labels)
    assert (int(read), int(signed)) == (1, 2)


def test_group_loss_adds_the_weighted_reading_term() -> None:
    model = random_videoxl(3).double().train()
    tokenizer = make_tokenizer()
    world = WorldConfig(num_frames=6, height=56, width=56, max_objects=2, sign_prob=1.0)
    cell = token_cell(model)
    assert cell == 28
    examples = []
    for seed in range(2):
        sample = draw_sample(np.random.default_rng(seed), world, TaskMix(1.0, 0.0, 0.0), 2)
        e = make_example(sample, tokenizer, PromptTemplate(), Preprocessor(56), (2, 4),
                         seed=seed, vocab_size=512, reading_cell=cell)
        e.pixels = e.pixels.double()
        examples.append(e)
    assert any(bool((e.reading > 0).any()) for e in examples)
    head = ReadingHead(model.config.llm.hidden_size, slots_for(cell)).double()
    boundary = BoundaryConfig(window=1, min_frames=2, max_frames=4, threshold=0.0)
    plan = [WindowPlan(0, 0, 12, 2), WindowPlan(1, 12, 24, 4)]
    plain, _ = group_loss(model, examples, boundary, window=16, plan=plan)
    both, counts = group_loss(model, examples, boundary, window=16, plan=plan,
                              reading_head=head, reading_weight=0.3)
    tokens = model.encode_frames(torch.cat([e.pixels for e in examples])).tokens  # (B*N, T, C)
    labels = torch.cat([e.reading for e in examples])
    aux = reading_loss(head(tokens), labels)
    answer_tokens = sum(e.num_answer_tokens for e in examples)
    torch.testing.assert_close(both, plain + 0.3 * answer_tokens * aux, rtol=1e-12, atol=0)
    (row,) = counts.reading
    assert row[1].item() == labels.shape[0] == 12
    torch.testing.assert_close(row[0] / row[1], aux.detach(), rtol=1e-12, atol=0)
    model.zero_grad()
    (both - plain).backward()  # the reading term alone
    grad = model.model.mm_projector.parameters().__next__().grad
    assert grad is not None and grad.abs().sum() > 0
    # the decoder sees no reading gradient: its two answer-loss gradients cancel to rounding
    assert max(float(p.grad.abs().max()) for p in model.model.layers.parameters()
               if p.grad is not None) < 1e-10


def test_a_warming_head_learns_alone() -> None:
    """With ``reading_head_only`` the reading term has the same value but sends nothing into
    the projector; the head itself still learns."""
    model = random_videoxl(1).double().train()
    world = WorldConfig(num_frames=4, height=56, width=56, sign_prob=1.0)
    sample = draw_sample(np.random.default_rng(3), world, TaskMix(1.0, 0.0, 0.0), 1)
    e = make_example(sample, make_tokenizer(), PromptTemplate(), Preprocessor(56), (2,),
                     seed=3, vocab_size=512, reading_cell=token_cell(model))
    e.pixels = e.pixels.double()
    head = ReadingHead(model.config.llm.hidden_size, slots_for(token_cell(model))).double()
    boundary = BoundaryConfig(window=1, min_frames=2, max_frames=4, threshold=0.0)
    plan = [WindowPlan(0, 0, 16, 2)]
    losses, grads = [], []
    for only in (False, True):
        model.zero_grad()
        head.zero_grad()
        plain, _ = group_loss(model, [e], boundary, window=16, plan=plan)
        both, _ = group_loss(model, [e], boundary, window=16, plan=plan, reading_head=head,
                             reading_weight=1.0, reading_head_only=only)
        (both - plain).backward()
        losses.append(both.detach())
        grads.append((next(model.model.mm_projector.parameters()).grad.abs().max(),
                      head.proj.weight.grad.abs().max()))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-12, atol=0)
    assert grads[0][0] > 1e-6 and grads[1][0] < 1e-10  # projector: reached, then not
    assert grads[0][1] > 0 and torch.equal(grads[0][1], grads[1][1])  # the head learns alike


def test_group_loss_without_labels_is_refused() -> None:
    model = random_videoxl(0).train()
    sample = draw_sample(np.random.default_rng(0), WorldConfig(num_frames=4, height=56,
                                                               width=56), TaskMix(1.0, 0, 0))
    e = make_example(sample, make_tokenizer(), PromptTemplate(), Preprocessor(56), (2,), seed=0,
                     vocab_size=512)
    module = TrainModule(model, BoundaryConfig(window=1, min_frames=2, max_frames=4),
                         window=16, reading_weight=1.0)
    with pytest.raises(ValueError, match="reading labels"):
        module([e])


def _run(output_dir: Path, **kw):
    base = {"model": "tiny-random", "device": "cpu", "output_dir": str(output_dir), "seed": 0,
            "stages": [[30, [2, 4]]], "lr": 3e-3, "warmup_steps": 2, "batch": 4,
            "micro_batch": 4, "frames": 1, "reading_loss": 1.0,
            "mix": {"video": 0, "image": 0, "multi_image": 0, "reading": 1},
            "world": {"max_objects": 1, "sign_prob": 1.0}, "window": 16, "log_every": 10}
    return config_from_dict({**base, **kw})


@pytest.mark.slow
def test_a_run_with_the_reading_loss_learns_and_resumes(tmp_path: Path) -> None:
    rows = train(_run(tmp_path / "straight"))
    first = np.mean([r["reading_loss"] for r in rows[:5]])
    last = np.mean([r["reading_loss"] for r in rows[-5:]])
    assert last < 0.8 * first, (first, last)
    for r in rows:  # "loss" is the objective: answers + 1.0 x reading
        assert r["loss"] == pytest.approx(r["answer_loss"] + r["reading_loss"], rel=1e-3)
        assert 0.0 <= r["sign_read"] <= 1.0
    ckpt = tmp_path / "straight" / "step_0000030"
    heads = load_file(str(ckpt / HEADS_FILE))
    assert heads.keys() == {"reading_head.proj.weight", "reading_head.proj.bias"}
    load_videoxl(ckpt / "model", device="cpu")  # the model holds no head key

    broken = tmp_path / "broken"
    train(_run(broken, max_steps=4, stages=[[8, [2, 4]]]))
    train(_run(broken, stages=[[8, [2, 4]]], resume=True))
    again = train(_run(tmp_path / "again", stages=[[8, [2, 4]]]))
    resumed = [json.loads(line) for line in (broken / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in again]
    assert [r["reading_loss"] for r in resumed] == [r["reading_loss"] for r in again]


def test_a_run_starts_its_head_from_another_runs_checkpoint(tmp_path: Path) -> None:
    """An export keeps no head; ``reading_head_init`` hands a trained one to the next run,
    whose first step then reads far better than a random head's."""
    train(_run(tmp_path / "a", stages=[[60, [2, 4]]]))
    heads = tmp_path / "a" / "step_0000060" / HEADS_FILE
    still = {"stages": [[1, [2, 4]]], "lr": 1e-12}  # one step that moves nothing measurable
    fresh = train(_run(tmp_path / "b", **still))
    warm = train(_run(tmp_path / "c", **still, reading_head_init=str(heads)))
    trained = load_file(str(heads))
    for run, same in (("b", False), ("c", True)):
        saved = load_file(str(tmp_path / run / "step_0000001" / HEADS_FILE))
        assert all(torch.allclose(saved[k], trained[k], atol=1e-9) == same for k in trained)
    assert warm[0]["reading_loss"] < fresh[0]["reading_loss"]
    other = tmp_path / "other.safetensors"
    save_file({"reading_head.proj.weight": torch.zeros(3, 3)}, str(other))
    with pytest.raises(ValueError, match="heads are"):
        train(_run(tmp_path / "d", stages=[[1, [2]]], reading_head_init=str(other)))
    with pytest.raises(ValueError, match="reading_head_init"):
        config_from_dict({"reading_head_init": str(heads)})


def test_a_run_mixes_long_videos_into_its_steps(tmp_path: Path) -> None:
    """Long needle videos ride in the same steps as the short ones, in their own forward
    groups (capped by frames), with their own per-task loss and reading labels."""
    mix = {"video": 1, "image": 1, "multi_image": 0, "long_video": 1, "long_frames": 6,
           "long_tasks": ["needle"]}
    rows = train(_run(tmp_path, stages=[[3, [2, 4]]], frames=2, batch=6, micro_batch=6,
                      micro_batch_frames=6, mix=mix, world={"max_objects": 1,
                                                            "sign_prob": 1.0}))
    seen = set().union(*(r["task_loss"] for r in rows))
    assert "long_video/needle" in seen and any(k.startswith("video/") for k in seen)
    assert all(r["reading_loss"] > 0 for r in rows)


def test_the_recipe_warms_the_head_up_first(tmp_path: Path) -> None:
    """During ``reading_warmup_steps`` the model gets no reading gradient, so its answer
    losses follow a run without the reading loss -- with clipping on, as the head is clipped
    on its own; after the warm-up they part."""
    plain = train(_run(tmp_path / "plain", stages=[[5, [2]]], reading_loss=0.0, grad_clip=1.0))
    warm = train(_run(tmp_path / "warm", stages=[[5, [2]]], reading_warmup_steps=3,
                      grad_clip=1.0))
    assert max(r["grad_norm"] for r in plain[:4]) > 1.0  # clipping did act
    # a step's loss is measured before its update: steps 1-4 see only warm-up updates
    for p, w in zip(plain[:4], warm[:4], strict=True):
        assert w["answer_loss"] == pytest.approx(p["loss"], rel=1e-6)
    assert warm[4]["answer_loss"] != pytest.approx(plain[4]["loss"], rel=1e-4)


def test_resuming_a_checkpoint_without_the_head_is_refused(tmp_path: Path) -> None:
    train(_run(tmp_path, stages=[[2, [2]]], reading_loss=0.0))
    with pytest.raises(FileNotFoundError, match="heads"):
        train(_run(tmp_path, stages=[[4, [2]]], resume=True))


@pytest.mark.parametrize("bad, field", [({"reading_loss": -1.0}, "reading_loss must be >= 0"),
                                        ({"reading_loss": 1.0, "train_projector": False,
                                          "train_vision": False}, "train_projector")])
def test_bad_reading_config_is_rejected(bad: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        config_from_dict(bad)
