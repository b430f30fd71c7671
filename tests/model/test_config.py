"""Checkpoint config mapping: what is accepted, what is refused with a clear error."""

from __future__ import annotations

import pytest

from streamvxl.errors import CheckpointError
from streamvxl.model.config import from_checkpoint_dict

LLAMA = {"model_type": "llama", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}


def test_llama_maps_to_qwen2_without_bias() -> None:
    cfg = from_checkpoint_dict({**LLAMA, "rope_parameters": {"rope_type": "default",
                                                             "rope_theta": 5e4}})
    assert not cfg.llm.attention_bias and cfg.llm.rope_theta == 5e4 and cfg.visual is None


@pytest.mark.parametrize("key", ["rope_scaling", "rope_parameters"])
def test_scaled_rope_is_refused(key: str) -> None:
    with pytest.raises(CheckpointError, match=key):
        from_checkpoint_dict({**LLAMA, key: {"rope_type": "llama3", "factor": 8.0}})


def test_wrong_types_are_checkpoint_errors() -> None:
    with pytest.raises(CheckpointError, match="num_attention_heads"):
        from_checkpoint_dict({**LLAMA, "num_attention_heads": "4"})
    with pytest.raises(CheckpointError, match="invalid model shape"):
        from_checkpoint_dict({**LLAMA, "num_key_value_heads": 3})
