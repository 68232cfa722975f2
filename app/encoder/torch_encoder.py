"""The encoder the service and the evaluation run: a loaded tower plus its preprocessing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from app.encoder.backbones import (
    load_offline_backbone,
    load_openclip_tower,
    set_timm_pool,
)
from app.encoder.checkpoint import load_checkpoint
from app.encoder.identity import OFFLINE_MODEL_ID, checkpoint_model_id, offline_preprocess
from app.encoder.model_spec import ModelLoadError, parse_model_spec
from app.encoder.preprocess import PreprocessConfig, eval_batch

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def with_mirror(pixels: torch.Tensor, flip: bool) -> torch.Tensor:
    """The batch, followed by its mirror images when the model serves with a mirror view (one
    forward pass over both directions)."""
    return torch.cat([pixels, pixels.flip(-1)]) if flip else pixels


def unit_embeddings(features: torch.Tensor, n: int, flip: bool) -> torch.Tensor:
    """L2-normalised embeddings of `n` images from the tower's output over `with_mirror`'s batch:
    with a mirror view, the normalised mean of the two directions. The PyTorch path and the
    exported ONNX graph both compute this, so they cannot drift apart."""
    features = torch.nn.functional.normalize(features.float(), dim=-1)
    if flip:
        features = torch.nn.functional.normalize(features[:n] + features[n:], dim=-1)
    return features


@dataclass
class Encoder:
    """Image tower in eval mode on its device; `embed` returns L2-normalised float32 rows."""

    module: nn.Module
    preprocess: PreprocessConfig
    model_id: str
    embed_dim: int
    device: torch.device
    runtime: str = "torch"  # ONNX Runtime serves through app/encoder/onnx_graph.py instead

    @torch.inference_mode()
    def embed_tensor(self, batch: torch.Tensor) -> np.ndarray:
        batch = batch.to(self.device, non_blocking=True)
        n, flip = batch.shape[0], self.preprocess.flip
        batch = with_mirror(batch, flip)
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.float16):
                features = self.module(batch)
        else:
            features = self.module(batch)
        return unit_embeddings(features, n, flip).cpu().numpy().astype(np.float32, copy=False)

    def embed_pixels(self, batch: np.ndarray) -> np.ndarray:
        """`embed_tensor` of pixels as `eval_pixels` makes them (the service's path)."""
        return self.embed_tensor(torch.from_numpy(batch))

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return self.embed_pixels(eval_batch(images, self.preprocess))


def override_pipeline(
    encoder: Encoder,
    resize_mode: str | None = None,
    pool: str | None = None,
    flip: bool | None = None,
    reference_views: tuple[str, ...] | None = None,
) -> Encoder:
    """The same weights with another serving pipeline: for evaluation and model selection.

    The service never overrides a model's pipeline (its embeddings would silently change);
    a pipeline that measures better is shipped by writing it into a checkpoint. The returned
    encoder shares the module: a pooling change applies to `encoder` too.
    """
    changes: dict[str, Any] = {}
    if resize_mode is not None:
        changes["resize_mode"] = resize_mode
    if flip is not None:
        changes["flip"] = flip
    if reference_views is not None:
        changes["reference_views"] = reference_views
    if pool is not None:
        if not hasattr(encoder.module, "trunk"):
            raise ModelLoadError("pooling can only be changed on a timm tower")
        set_timm_pool(encoder.module, pool)
    return replace(encoder, preprocess=replace(encoder.preprocess, **changes))


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("RETAILKLIP_DEVICE=cuda but no CUDA device is available")
    if setting not in ("cpu", "cuda"):
        raise ModelLoadError(f"unknown device {setting!r}: use auto, cpu or cuda")
    return torch.device(setting)


def load_tower(model: str) -> tuple[nn.Module, PreprocessConfig, str, int]:
    """The tower a model setting names (see app/encoder/model_spec.py), with its model id."""
    spec = parse_model_spec(model)
    if spec.kind == "checkpoint":
        assert spec.path is not None
        tower, tower_cfg, preprocess, _ = load_checkpoint(spec.path)
        return tower, preprocess, checkpoint_model_id(spec.path), tower_cfg.embed_dim
    if spec.kind == "offline":
        tower, tower_cfg = load_offline_backbone()
        return tower, offline_preprocess(), OFFLINE_MODEL_ID, tower_cfg.embed_dim
    tower, tower_cfg, preprocess = load_openclip_tower(spec.name, spec.tag)
    if spec.tag == "random":
        log.warning("model %s has RANDOM weights: for tests only", model)
    return tower, preprocess, f"openclip:{spec.name}:{spec.tag}", tower_cfg.embed_dim


def load_encoder(model: str, device: str = "auto") -> Encoder:
    torch_device = resolve_device(device)
    tower, preprocess, model_id, embed_dim = load_tower(model)
    tower = tower.eval().to(torch_device)
    if torch_device.type == "cuda":
        tower = tower.to(memory_format=torch.channels_last)
    encoder = Encoder(tower, preprocess, model_id, embed_dim, torch_device)
    # Warm-up: the first pass allocates buffers and picks kernels; pay that before serving.
    warm = torch.zeros(1, 3, preprocess.image_size, preprocess.image_size)
    out = encoder.embed_tensor(warm)
    if out.shape != (1, embed_dim):
        raise ModelLoadError(f"encoder produced shape {out.shape}, expected (1, {embed_dim})")
    return encoder
