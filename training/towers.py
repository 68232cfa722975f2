"""The tower a run starts from, named as the service names models (app/encoder/model_spec.py)."""

from __future__ import annotations

from torch import nn

from app.encoder.backbones import TowerConfig, load_offline_backbone, load_openclip_tower
from app.encoder.checkpoint import load_checkpoint
from app.encoder.identity import offline_preprocess
from app.encoder.model_spec import parse_model_spec
from app.encoder.preprocess import PreprocessConfig


def start_tower(model: str, image_size: int) -> tuple[nn.Module, TowerConfig, PreprocessConfig]:
    """The tower to finetune, named as the service names models (app/encoder/model_spec.py)."""
    spec = parse_model_spec(model)
    if spec.kind == "offline":
        tower, cfg = load_offline_backbone(image_size)
        return tower, cfg, offline_preprocess(image_size)
    if spec.kind == "checkpoint":
        assert spec.path is not None
        tower, cfg, pre, _ = load_checkpoint(spec.path)
        return tower, cfg, _resized(pre, image_size, cfg)
    tower, cfg, pre = load_openclip_tower(spec.name, spec.tag)
    return tower, cfg, pre


def _resized(pre: PreprocessConfig, image_size: int, cfg: TowerConfig) -> PreprocessConfig:
    # A ViT's positional embedding fixes its input size; convolutional towers take any size.
    if not cfg.is_timm:
        return pre
    return PreprocessConfig(image_size, pre.mean, pre.std, pre.crop_pct)
