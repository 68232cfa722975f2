"""Run-time plumbing for training: the starting tower, devices, DDP, seeds, the LR schedule."""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from app.encoder.backbones import (
    TowerConfig,
    load_offline_backbone,
    load_openclip_tower,
    offline_preprocess,
)
from app.encoder.checkpoint import load_checkpoint
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


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_setting: str) -> tuple[Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = device_setting == "cuda" or (device_setting == "auto" and torch.cuda.is_available())
    if world <= 1:
        return Dist(), torch.device("cuda" if cuda else "cpu")
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if cuda:
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return info, torch.device("cuda", info.local_rank) if cuda else torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_cosine(warmup_steps: int, total_steps: int, floor: float = 0.01):
    """LambdaLR factor: linear warm-up to 1, then cosine down to `floor`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
