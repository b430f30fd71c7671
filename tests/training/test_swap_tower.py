"""Swapping a tower into a delta: the projector is fitted to the new tower, everything else is
kept, and a tower that does not fit is refused.

- The delta's own tower swapped in: the old path's output comes out unchanged (fit error ~0)
  and every tensor but the projector's is the input's.
- A perturbed tower: the fit lowers the held-out error below the plain swap's, and the written
  delta holds the new tower (in the delta's dtype), the fit record and the given caveat.
- A tower of another shape, or one the projector cannot be fitted to, is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamvxl.errors import CheckpointError
from streamvxl.model.default import CAVEAT_KEY, read_delta
from streamvxl.model.vision import VisionTower
from training.default_model import tiny_vision_config
from training.swap_tower import PROJECTOR_PREFIX, TOWER_PREFIX, swap_tower
from training.vision_pretrain import SELECT_LAYER, load_tower_state, save_tower

SHIPPED = Path(__file__).resolve().parents[2] / "streamvxl/weights/streamvxl-tiny.safetensors"
SMALL = {"steps": 12, "batch": 8, "eval_frames": 16}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _tower(state: dict[str, torch.Tensor]) -> VisionTower:
    tower = VisionTower(tiny_vision_config(), SELECT_LAYER)
    tower.load_state_dict(state)
    return tower


def test_its_own_tower_swaps_in_unchanged(tmp_path: Path) -> None:
    report = swap_tower(SHIPPED, SHIPPED, tmp_path / "same.safetensors", caveat="", **SMALL)
    assert report.fit_error_before < 1e-6 and report.fit_error_after < 1e-3
    meta, tensors = read_delta(report.path)
    _, shipped = read_delta(SHIPPED)
    assert tensors.keys() == shipped.keys()
    for name, value in shipped.items():
        if not name.startswith(PROJECTOR_PREFIX):
            assert torch.equal(tensors[name], value), name
    assert CAVEAT_KEY not in meta and meta["training"]["swap_tower"]["steps"] == SMALL["steps"]


def test_a_new_tower_gets_a_fitted_projector(tmp_path: Path) -> None:
    state = load_tower_state(SHIPPED)
    torch.manual_seed(0)
    moved = {k: v + 0.5 * v.std() * torch.randn_like(v) if v.ndim == 2 else v
             for k, v in state.items()}  # every matrix nudged: other features, same shape
    tower_file = save_tower(_tower(moved), tmp_path / "tower.safetensors", {})
    report = swap_tower(SHIPPED, tower_file, tmp_path / "new.safetensors", caveat="preview: test",
                        **{**SMALL, "steps": 40})
    assert report.fit_error_after < report.fit_error_before
    meta, tensors = read_delta(report.path)
    assert meta[CAVEAT_KEY] == "preview: test"
    assert meta["training"]["swap_tower"]["fit_error_after"] == report.fit_error_after
    for name, value in moved.items():
        got = tensors[TOWER_PREFIX + name]
        assert torch.equal(got, value.to(got.dtype)), name
    _, shipped = read_delta(SHIPPED)
    assert any(not torch.equal(tensors[k], shipped[k]) for k in shipped
               if k.startswith(PROJECTOR_PREFIX))


def test_a_tower_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    other = {k: v[..., :-1] if k.endswith("patch_embedding.weight") else v
             for k, v in load_tower_state(SHIPPED).items()}
    wrong = tmp_path / "wrong.safetensors"
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in other.items()}, str(wrong))
    with pytest.raises(CheckpointError, match="not a tower of"):
        swap_tower(SHIPPED, wrong, tmp_path / "x.safetensors", caveat="", **SMALL)
    fresh = save_tower(VisionTower(tiny_vision_config(), SELECT_LAYER),
                       tmp_path / "fresh.safetensors", {})
    with pytest.raises(CheckpointError, match="does not see what"):
        swap_tower(SHIPPED, fresh, tmp_path / "y.safetensors", caveat="", max_fit_error=1e-4,
                   **SMALL)
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()
