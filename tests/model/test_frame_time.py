"""Frame time stamps (`streamvxl.model.frame_time`): the text, its ids, where they go, and the
switch that turns them on travelling through checkpoints, deltas and model identities."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from streamvxl.errors import CheckpointError, ConfigError
from streamvxl.model.config import from_checkpoint_dict
from streamvxl.model.frame_time import STAMP_TOKENS, StampIds, stamp_frames, stamp_text
from streamvxl.model.saving import checkpoint_config
from streamvxl.persist.identity import _hashed_config, model_identity
from streamvxl.testing import make_tokenizer, random_videoxl


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "000000s"), (0.49, "000000s"), (0.5, "000001s"), (12.4, "000012s"),
    (4210.0, "004210s"), (999_999.4, "999999s"), (1_000_000.0, "000000s")])
def test_a_stamp_is_whole_seconds_zero_padded_and_wraps(seconds, text) -> None:
    assert stamp_text(seconds) == text


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_a_time_before_the_first_frame_is_refused(bad) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        stamp_text(bad)


def test_stamp_ids_write_one_token_per_character() -> None:
    tok = make_tokenizer()
    ids = StampIds(tok)([0.0, 12.4, 4210.0])
    assert ids.shape == (3, STAMP_TOKENS) and ids.dtype == torch.long
    assert [tok.decode(row.tolist()) for row in ids] == ["000000s", "000012s", "004210s"]


def test_a_tokenizer_that_merges_characters_is_refused() -> None:
    class Merging:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [1, 2]}

    with pytest.raises(ConfigError, match="one token per character"):
        StampIds(Merging())


def test_stamp_frames_puts_the_stamp_embeddings_before_each_frame() -> None:
    model = random_videoxl(0)
    tokens = torch.randn(2, 4, 64)
    ids = StampIds(make_tokenizer())([3.0, 7.0])
    out = stamp_frames(model.embed_ids, tokens, ids)
    assert out.shape == (2, STAMP_TOKENS + 4, 64)
    torch.testing.assert_close(out[:, STAMP_TOKENS:], tokens)
    torch.testing.assert_close(out[:, :STAMP_TOKENS], model.embed_ids(ids))
    with pytest.raises(ValueError, match="do not match"):
        stamp_frames(model.embed_ids, tokens, ids[:1])


def test_tokens_per_frame_counts_the_stamp() -> None:
    model = random_videoxl(0)
    visual = model.visual_tokens_per_frame
    assert model.tokens_per_frame == visual
    assert random_videoxl(0, frame_time=True).tokens_per_frame == visual + STAMP_TOKENS


def test_the_switch_survives_a_checkpoint_config_and_is_absent_when_off() -> None:
    model = random_videoxl(0)
    off = checkpoint_config(model)
    assert "mm_frame_time" not in off  # Video-XL's own keys only
    assert from_checkpoint_dict(off).visual.frame_time is False
    on = checkpoint_config(random_videoxl(0, frame_time=True))
    assert on["mm_frame_time"] is True
    assert from_checkpoint_dict(on).visual.frame_time is True
    with pytest.raises(CheckpointError, match="mm_frame_time"):
        from_checkpoint_dict({**on, "mm_frame_time": "yes"})


def test_the_identity_of_an_unstamped_model_is_what_it_was_before_the_switch() -> None:
    """Memories written before frame time existed still open: the field is hashed only when
    on, so an unstamped model's identity hashes the config as it was before it."""
    model = random_videoxl(0)
    before = dataclasses.asdict(model.config)
    del before["visual"]["frame_time"]
    assert _hashed_config(model.config) == before
    on = random_videoxl(0, frame_time=True)
    assert _hashed_config(on.config)["visual"]["frame_time"] is True
    assert model_identity(on, on.config).digest != model_identity(model, model.config).digest
