"""A text-to-frame scorer through open_clip: which stored intervals show what a question names.

The key scorer (`streamvxl.memory.recall.DigestIndex`) ranks intervals by what the question's
own queries attend to; a model that reads signs but does not look for shapes finds the one and
not the other. `ClipScorer` ranks them by what their frames *look like* against the question's
words instead, as ReKV's external retriever does: each interval keeps the image embeddings of a
few of its frames (`Retrieval.frame_rows`), a question is embedded as text, and an interval
scores the best match over its rows.

Two ways to get one:

- `ClipScorer.default()`: the small CLIP shipped with the package (``weights/world-clip``:
  a ViT on 64 x 64 frames and a small text transformer, trained on the world's frames and
  questions by ``python -m training.clip_scorer``); it knows the world's shapes and colours.
  `ClipScorer.world(checkpoint)`: that architecture with other weights the recipe wrote.
- `ClipScorer.from_open_clip(name, checkpoint)`: any open_clip architecture with its weights in
  a ``.safetensors`` file, for real footage (checkpoints are never unpickled).

Shapes: F frames, E embedding width, T texts.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CheckpointError, ConfigError, MissingDependencyError

WORLD_CLIP_FILE = "world-clip.safetensors"
"""The shipped scorer's weights, in ``streamvxl/weights``."""

WORLD_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 4,
                   "head_width": 32, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4,
                 "layers": 4, "mlp_ratio": 2.0},
}
"""The shipped scorer's open_clip architecture (`open_clip.CLIP` keyword arguments)."""

WORLD_CLIP_MEAN = (0.5, 0.5, 0.5)
WORLD_CLIP_STD = (0.25, 0.25, 0.25)


def _open_clip():
    try:
        import open_clip
    except ImportError as e:  # a declared dependency; a broken install says so
        raise MissingDependencyError("the text-to-frame scorer needs open_clip_torch "
                                     "(pip install open_clip_torch)") from e
    return open_clip


def build_world_clip() -> torch.nn.Module:
    """An untrained model of the shipped scorer's architecture (what the recipe trains)."""
    open_clip = _open_clip()
    return open_clip.CLIP(**WORLD_CLIP_CONFIG, init_logit_bias=-10.0)


def world_tokenizer() -> Any:
    """The shipped scorer's tokenizer: CLIP's byte-pair encoding at its context length."""
    return _open_clip().SimpleTokenizer(
        context_length=WORLD_CLIP_CONFIG["text_cfg"]["context_length"])


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 (16 hex digits) over ``model``'s parameter and buffer names, shapes and bytes:
    two scorers with one digest put frames in one embedding space."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        flat = t.detach().float().reshape(-1).contiguous().cpu()  # one dtype: a cast is no change
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class ClipScorer:
    """Image embeddings of frames and text embeddings of questions, in one space.

    Args:
        model: an ``open_clip.CLIP`` (or ``CustomTextCLIP``); put in eval mode, no grads.
        tokenizer: open_clip's tokenizer for it (``str`` list -> (T, context) ids).
        image_size: the square side its vision tower takes.
        mean, std: per-channel normalisation of [0, 1] pixels.
        device: where it runs (the memory model's device, or the CPU).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, image_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...],
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.digest = weights_digest(model)
        """sha256 over the weights (16 hex digits): which embedding space the scorer's
        frames live in (a log's frame embeddings are tagged with it)."""
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = image_size
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.dim = int(self.embed_text(["x"]).shape[1])

    @classmethod
    def default(cls, device: torch.device | str = "cpu") -> ClipScorer:
        """The scorer shipped for the embedded world model (see the module docstring).

        Raises:
            CheckpointError: the installation lacks its weights, or they are damaged.
        """
        path = resources.files("streamvxl") / "weights" / WORLD_CLIP_FILE
        try:
            with resources.as_file(path) as file:
                return cls.world(file, device)
        except CheckpointError as e:
            raise CheckpointError(f"the shipped scorer's weights ({WORLD_CLIP_FILE}) cannot "
                                  f"be loaded: {e}; reinstall streamvxl") from e

    @classmethod
    def world(cls, checkpoint: str | Path, device: torch.device | str = "cpu") -> ClipScorer:
        """The shipped scorer's architecture with the weights in ``checkpoint`` (a
        ``.safetensors`` file `training.clip_scorer` wrote: a retrained candidate).

        Raises:
            CheckpointError: the file cannot be read or holds other weights.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        model = build_world_clip()
        try:
            model.load_state_dict({k: v.float() for k, v in load_file(str(checkpoint)).items()})
        except (OSError, SafetensorError, RuntimeError) as e:
            raise CheckpointError(f"{checkpoint} does not hold the world CLIP's weights: "
                                  f"{e}") from e
        return cls(model, world_tokenizer(), WORLD_CLIP_CONFIG["vision_cfg"]["image_size"],
                   WORLD_CLIP_MEAN, WORLD_CLIP_STD, device)

    @classmethod
    def from_open_clip(cls, name: str, checkpoint: str | Path,
                       device: torch.device | str = "cpu") -> ClipScorer:
        """Any open_clip architecture ``name`` (e.g. "ViT-B-32") with its weights from the
        ``.safetensors`` file ``checkpoint``.

        Raises:
            ConfigError: ``name`` is not an open_clip architecture, or the file is not
                ``.safetensors``.
            CheckpointError: the file cannot be read, or does not hold that architecture's
                weights.
        """
        open_clip = _open_clip()
        if name not in open_clip.list_models():
            raise ConfigError(f"unknown open_clip architecture {name!r} "
                              f"(open_clip.list_models() lists them)")
        path = Path(checkpoint)
        if path.suffix != ".safetensors":
            raise ConfigError(f"a scorer checkpoint must be .safetensors (never unpickled), "
                              f"got {path}")
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except (OSError, SafetensorError) as e:
            raise CheckpointError(f"{path} is not a readable .safetensors file: {e}") from e
        model = open_clip.create_model(name)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"{path} does not hold {name}'s weights: {e}") from e
        cfg = model.visual.preprocess_cfg
        size = cfg["size"]
        return cls(model, open_clip.get_tokenizer(name),
                   size if isinstance(size, int) else int(size[0]),
                   tuple(cfg["mean"]), tuple(cfg["std"]), device)

    @torch.inference_mode()
    def embed_frames(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(F, E) unit-length image embeddings of RGB frames (F, H, W, 3) uint8, on the CPU.
        Frames are centre-cropped to a square and resized to the tower's input."""
        x = torch.as_tensor(frames).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (F, 3, H, W)
        h, w = x.shape[2:]
        side = min(h, w)
        x = x[:, :, (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        if side != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        x = (x - self._mean) / self._std
        return F.normalize(self.model.encode_image(x).float(), dim=-1).cpu()

    @torch.inference_mode()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(T, E) unit-length text embeddings, on the CPU."""
        ids = self.tokenizer(texts).to(self.device)
        return F.normalize(self.model.encode_text(ids).float(), dim=-1).cpu()

    @property
    def scale(self) -> float:
        """The model's logit scale: cosines times it are its logits over candidates."""
        return float(self.model.logit_scale.detach().exp())


__all__ = ["WORLD_CLIP_CONFIG", "WORLD_CLIP_FILE", "ClipScorer", "build_world_clip",
           "world_tokenizer"]
