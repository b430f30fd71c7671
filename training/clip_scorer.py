"""Train the shipped text-to-frame scorer (`streamvxl.memory.clip_scorer`) on the world.

A batch is a few random episodes of the world (``split="train"``: no held-out (shape, colour)
pairing), a few frames of each, and texts about their objects: the world's own questions in
their training phrasings (`streamvxl.world.questions.phrase`) and bare noun phrases ("the red
star", "something blue", "a sign"). What a text names is read back from its slots (a colour, a
shape, or both, per object; a sign for the needle questions), and a frame is a positive for a text when it shows an object the text names
-- any episode's frame, not only the text's own. The loss is SigLIP's sigmoid loss over every
(frame, text) pair of the batch, which takes any number of positives per text (an absent
thing's question has none). Frames get a random gain and pixel noise.

Evaluation (printed every ``--eval-every`` steps and at the end; ``--evaluate`` alone scores
the shipped weights or ``--init``'s) uses ``split="eval"`` episodes (held-out pairings) and
held-out phrasings: for every text with a positive in the batch, whether its best-scoring frame
is one (precision at 1), split into texts that name a held-out pairing and the others; and for
every text naming a (shape, colour) with both the thing and a look-alike in the batch (one of
its shape and colour: a yellow circle for "the yellow diamond"), whether the thing's best frame
outscores every look-alike's ("over_lookalikes"). Over hours of video a look-alike is always
somewhere in the memory, and citations of "when" questions went to it (docs/retrieval.md);
``--lookalike-weight`` weighs those pairs up in the loss.

The shipped weights are step 2,400 of a 2,800-step cosine on one H200 (14 processes drawing
the world; 0.17 s a step; the call's time ran out first, and the recipe writes the weights at
every evaluation); precision at 1 there: 0.98 on texts naming held-out pairings, 0.97 on the
others (step 1,500 of a 1,500-step run: 0.95 / 0.85)::

    python -m training.clip_scorer --steps 2800 --episodes 64 --frames 16 --texts 16 \
        --workers 15 --device cuda --eval-every 400 \
        --out streamvxl/weights/world-clip.safetensors

On the 2-core CPU the default batch (256 frames, 256 texts) takes ~1.3 s a step and 1,500 of
them reach only ~0.6-0.7: the batch size matters more than the steps.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from streamvxl.errors import CheckpointError
from streamvxl.memory.clip_scorer import (
    WORLD_CLIP_CONFIG,
    WORLD_CLIP_MEAN,
    WORLD_CLIP_STD,
    ClipScorer,
    build_world_clip,
    world_tokenizer,
)
from streamvxl.world.questions import FORMS, form_facts, phrase
from streamvxl.world.render import render
from streamvxl.world.scene import (
    COLOURS,
    HELD_OUT_COMBOS,
    PLURALS,
    SHAPES,
    Episode,
    WorldConfig,
    sample_episode,
)

log = logging.getLogger("training.clip_scorer")

Named = tuple[str | None, str | None]
"""(shape, colour) a text names; None where it leaves that open."""

_SHAPE_WORDS = {**{s: s for s in SHAPES}, **{p: s for s, p in PLURALS.items()}}
_WORD = re.compile(r"[a-z]+")
SIGN = "sign"
"""What needle questions name: a board with a word or a number (any colour)."""
_SIGN_PHRASES = ("a sign", "the sign", "a board with writing", "text on a sign",
                 "a number on a board", "a word written on a sign")


def named_in(text: str) -> list[Named]:
    """Every thing a slot's text names: a colour followed by a shape names both, a shape or a
    colour alone names that.

    Example:
        >>> named_in("the red star, the circle and the blue one")
        [('star', 'red'), ('circle', None), (None, 'blue')]
    """
    words = _WORD.findall(text.lower())
    out: list[Named] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in COLOURS:
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if nxt in _SHAPE_WORDS:
                out.append((_SHAPE_WORDS[nxt], w))
                i += 2
                continue
            out.append((None, w))
        elif w in _SHAPE_WORDS:
            out.append((_SHAPE_WORDS[w], None))
        i += 1
    return out


def shows(named: Named, shape: str, colour: str) -> bool:
    return named[0] in (None, shape) and named[1] in (None, colour)


def _bare_phrase(shape: str | None, colour: str | None, rng: np.random.Generator) -> str:
    if shape and colour:
        forms = ("{c} {s}", "the {c} {s}", "a {c} {s}", "{c} {s} on screen")
    elif shape:
        forms = ("{s}", "the {s}", "a {s}", "some {s}")
    else:
        forms = ("{c} object", "the {c} one", "something {c}", "a {c} thing")
    return forms[int(rng.integers(len(forms)))].format(c=colour, s=shape)


@dataclass(frozen=True)
class Texts:
    texts: list[str]
    named: list[list[Named]]
    held_out: list[bool]
    """Whether the text names a held-out (shape, colour) pairing."""


def episode_texts(ep: Episode, rng: np.random.Generator, k: int, split: str,
                  bare_prob: float = 0.3) -> Texts:
    """``k`` texts about ``ep``'s objects (questions in ``split``'s phrasings, or bare noun
    phrases), each with what it names."""
    pool: list[tuple[str, list[Named]]] = []
    for name, form in FORMS.items():
        for fact in form_facts(name, ep, rng):
            named = ([(SIGN, None)] if form.task == "needle"
                     else [n for v in fact.slots.values() for n in named_in(v)])
            if named:
                pool.append((phrase(form, fact.slots, rng, split)[0], named))  # type: ignore[arg-type]
    texts, names, held = [], [], []
    for _ in range(k):
        if ep.signs and rng.random() < bare_prob * 0.25:
            text, named = _SIGN_PHRASES[int(rng.integers(len(_SIGN_PHRASES)))], [(SIGN, None)]
        elif not pool or rng.random() < bare_prob:
            o = ep.objects[int(rng.integers(len(ep.objects)))] if ep.objects else None
            if o is None:
                continue
            how = int(rng.integers(3))
            shape = o.shape if how != 2 else None
            colour = o.colour if how != 1 else None
            if rng.random() < 0.2:  # something absent from this episode, as often as present
                shape = shape and SHAPES[int(rng.integers(len(SHAPES)))]
                colour = colour and tuple(COLOURS)[int(rng.integers(len(COLOURS)))]
            text, named = _bare_phrase(shape, colour, rng), [(shape, colour)]
        else:
            text, named = pool[int(rng.integers(len(pool)))]
        texts.append(text)
        names.append(named)
        held.append(any(n in HELD_OUT_COMBOS for n in named))
    return Texts(texts, names, held)


def looks_alike(named: Named, shape: str, colour: str) -> bool:
    """Whether an object of ``shape`` and ``colour`` shares exactly one of the two with a thing
    named by both (a yellow circle for "the yellow diamond"): what a scorer confuses."""
    if named[0] is None or named[1] is None or named[0] == SIGN:
        return False
    return (named[0] == shape) != (named[1] == colour)


def batch(rng: np.random.Generator, episodes: int, frames_per: int, texts_per: int,
          split: str, world: WorldConfig
          ) -> tuple[torch.Tensor, Texts, torch.Tensor, torch.Tensor]:
    """Frames (B, H, W, 3) uint8, their texts, labels (B, T) 1.0 where a frame shows what the
    text names, and look-alikes (B, T) 1.0 where it does not but shows something that
    `looks_alike` a thing the text names."""
    frames, visible, texts = [], [], Texts([], [], [])
    for _ in range(episodes):
        ep = sample_episode(rng, world, split=split)  # type: ignore[arg-type]
        video = render(ep)
        picks = rng.choice(ep.num_frames, size=min(frames_per, ep.num_frames), replace=False)
        for t in picks.tolist():
            frames.append(video[t])
            visible.append([(o.shape, o.colour) for o in ep.objects if o.t_in <= t < o.t_out]
                           + [(SIGN, "") for s in ep.signs if s.visible(t)])
        more = episode_texts(ep, rng, texts_per, split)
        texts.texts.extend(more.texts)
        texts.named.extend(more.named)
        texts.held_out.extend(more.held_out)
    labels = torch.tensor([[float(any(shows(n, s, c) for n in named for s, c in seen))
                            for named in texts.named] for seen in visible])
    alike = torch.tensor([[float(any(looks_alike(n, s, c) for n in named for s, c in seen))
                           for named in texts.named] for seen in visible]) * (1 - labels)
    return torch.from_numpy(np.stack(frames)), texts, labels, alike


class Batches(torch.utils.data.IterableDataset):
    """Endless training batches (frames, texts, labels), each worker from its own seed."""

    def __init__(self, seed: int, episodes: int, frames: int, texts: int) -> None:
        self.seed, self.episodes, self.frames, self.texts = seed, episodes, frames, texts

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, 1, info.id if info is not None else 0])
        world = WorldConfig()
        while True:
            frames, texts, labels, alike = batch(rng, self.episodes, self.frames, self.texts,
                                                 "train", world)
            yield to_input(frames, rng), texts.texts, labels, alike


def to_input(frames: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
    """(B, 3, 64, 64) normalised; with ``rng``, a random gain and pixel noise per frame."""
    x = frames.permute(0, 3, 1, 2).float()
    if rng is not None:
        b = x.shape[0]
        gain = torch.from_numpy(rng.uniform(0.8, 1.25, size=(b, 1, 1, 1))).float()
        noise = torch.from_numpy(rng.uniform(0, 6, size=(b, 1, 1, 1))).float()
        x = (x * gain + torch.randn_like(x) * noise).clamp(0, 255)
    mean = torch.tensor(WORLD_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(WORLD_CLIP_STD).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def sigmoid_loss(model, images: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """SigLIP's loss over every (frame, text) pair, each pair weighted by ``weights`` (B, T)
    (None: all 1)."""
    img = F.normalize(model.encode_image(images), dim=-1)  # (B, E)
    txt = F.normalize(model.encode_text(ids), dim=-1)  # (T, E)
    logits = model.logit_scale.exp() * img @ txt.T + model.logit_bias  # (B, T)
    return F.binary_cross_entropy_with_logits(logits, labels, weights,
                                              reduction="sum") / labels.shape[0]


@torch.inference_mode()
def evaluate(model, tokenizer, seed: int, device: torch.device, rounds: int = 4,
             episodes: int = 16) -> dict:
    """Precision at 1 over held-out videos and phrasings (see the module docstring)."""
    model.eval()
    rng = np.random.default_rng([seed, 99])
    hits = {"held_out": [0, 0], "trained": [0, 0], "over_lookalikes": [0, 0]}
    for _ in range(rounds):
        frames, texts, labels, alike = batch(rng, episodes, 16, 16, "eval", WorldConfig())
        img = F.normalize(model.encode_image(to_input(frames).to(device)), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer(texts.texts).to(device)), dim=-1)
        sim = (img @ txt.T).cpu()  # (B, T)
        best = sim.argmax(0)  # (T,) best frame per text
        for j in range(len(texts.texts)):
            if labels[:, j].any():
                key = "held_out" if texts.held_out[j] else "trained"
                hits[key][0] += int(labels[best[j], j] > 0)
                hits[key][1] += 1
            if labels[:, j].any() and alike[:, j].any():  # the thing against its look-alikes
                shown = sim[labels[:, j] > 0, j].max()
                hits["over_lookalikes"][0] += int(shown > sim[alike[:, j] > 0, j].max())
                hits["over_lookalikes"][1] += 1
    model.train()
    return {k: (a / b if b else float("nan"), b) for k, (a, b) in hits.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--episodes", type=int, default=16, help="episodes per batch")
    p.add_argument("--frames", type=int, default=16, help="frames per episode in a batch")
    p.add_argument("--texts", type=int, default=16, help="texts per episode in a batch")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=0,
                   help="processes drawing batches (0: in the training loop)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--lookalike-weight", type=float, default=1.0,
                   help="weight of a (frame, text) pair whose frame shows a look-alike of what "
                        "the text names (one of its colour and shape; 1: as any pair)")
    p.add_argument("--init", type=Path, help="start from these weights (.safetensors)")
    p.add_argument("--evaluate", action="store_true",
                   help="only print the precision at 1 of --init (the shipped weights "
                        "without it) and exit")
    p.add_argument("--out", type=Path, help="the .safetensors to write")
    args = p.parse_args(argv)
    if args.out is None and not args.evaluate:
        p.error("--out is required to train")
    if args.lookalike_weight < 0:
        p.error("--lookalike-weight must be >= 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from safetensors.torch import save_file

    device = torch.device(args.device)
    model = build_world_clip()
    if args.init is not None or args.evaluate:  # loaded as the product loads them
        try:
            loaded = ClipScorer.world(args.init) if args.init is not None \
                else ClipScorer.default()
        except CheckpointError as e:
            p.error(str(e))
        model = loaded.model.requires_grad_(True).train()
    model = model.to(device)
    tokenizer = world_tokenizer()
    if args.evaluate:
        log.info("%s precision at 1: %s", args.init or "the shipped weights",
                 json.dumps(evaluate(model, tokenizer, args.seed, device)))
        return 0
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        done = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * done))

    loader = torch.utils.data.DataLoader(
        Batches(args.seed, args.episodes, args.frames, args.texts), batch_size=None,
        num_workers=args.workers, prefetch_factor=4 if args.workers else None)
    start = time.perf_counter()
    for step, (images, texts, labels, alike) in zip(range(args.steps), loader, strict=False):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        weights = 1 + (args.lookalike_weight - 1) * alike  # (B, T)
        loss = sigmoid_loss(model, images.to(device), tokenizer(texts).to(device),
                            labels.to(device), weights.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0:
            log.info("step %d/%d loss %.3f (%.2f s/step)", step, args.steps, loss.item(),
                     (time.perf_counter() - start) / (step + 1))
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            log.info("step %d precision at 1: %s", step + 1,
                     json.dumps(evaluate(model, tokenizer, args.seed, device)))
            # written at every evaluation: a run stopped early keeps what it reached
            args.out.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().half().cpu().contiguous()
                       for k, v in model.state_dict().items()},
                      str(args.out), metadata={"config": json.dumps(WORLD_CLIP_CONFIG),
                                               "steps": str(step + 1), "seed": str(args.seed),
                                               "lookalike_weight": str(args.lookalike_weight),
                                               "init": str(args.init or "")})
            log.info("wrote %s (step %d)", args.out, step + 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
