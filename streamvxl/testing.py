"""Tiny random checkpoints and a tiny tokenizer, for tests and benchmarks (no hub, no downloads).

Example:
    >>> import tempfile, pathlib
    >>> from streamvxl.testing import make_checkpoint
    >>> folder = make_checkpoint(pathlib.Path(tempfile.mkdtemp()))
    >>> sorted(p.name for p in folder.iterdir())[:2]
    ['config.json', 'model.safetensors']
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .model import VideoXL, tiny_config
from .model.saving import save_videoxl

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "system user assistant You are a helpful assistant.",
    "What colour is the car? When did the person leave the room? How many boxes are there?",
    "The red car left at 12 seconds. A blue square entered. There are three circles.",
    "Describe the scene. Is there a sign? What does the sign say? before after first last",
]


def make_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer with ChatML specials, vocabulary < the tiny model's 512."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")


def random_videoxl(seed: int = 0, scale: float = 0.08, *, frame_time: bool = False) -> VideoXL:
    """The conformance-shaped model with random weights (matrices ~ N(0, scale));
    ``frame_time`` stamps each frame with its time (`VisualConfig.frame_time`, no weights)."""
    torch.manual_seed(seed)
    cfg, vision = tiny_config()
    if frame_time:
        cfg = dataclasses.replace(cfg, visual=dataclasses.replace(cfg.visual, frame_time=True))
    model = VideoXL(cfg, vision)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif p.ndim >= 2 and "embed" not in name:
                p.copy_(scale * torch.randn_like(p))
            else:
                p.copy_(0.02 * torch.randn_like(p))
    tok_eos = 2  # SPECIALS index of <|im_end|> in make_tokenizer
    assert model.config.llm.eos_token_id == tok_eos
    return model.eval()


def make_checkpoint(folder: Path, seed: int = 0, model: VideoXL | None = None) -> Path:
    """A Video-XL checkpoint folder with tokenizer: what `VideoMemory.from_pretrained` reads;
    ``model`` (default: `random_videoxl` of ``seed``) e.g. a `random_model` of a full shape."""
    save_videoxl(model if model is not None else random_videoxl(seed), folder)
    make_tokenizer().save_pretrained(str(folder))
    return folder
