"""How a photo becomes the detector's input, shared by training and serving.

The photo is scaled so its long side is `long_side` pixels (products on a 12 MP shelf photo are
then 20-250 px, the range the feature pyramid covers), normalised as the ImageNet
EfficientNet-Lite trunk expects, and padded at the right and bottom to a multiple of the
coarsest stride, so every pyramid level is an exact grid and the anchor points are known from
the input size alone (`app/detector/decode.py`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class DetectorPreprocess:
    """Input geometry and normalisation; stored in the exported graph's metadata."""

    long_side: int = 1024
    # Pad to a multiple of this (the coarsest pyramid stride).
    pad_multiple: int = 64
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorPreprocess:
        return cls(
            long_side=int(data["long_side"]),
            pad_multiple=int(data["pad_multiple"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class PreparedImage:
    """The network input for one photo, and how to map boxes back onto the photo."""

    pixels: np.ndarray  # float32 (3, H, W), H and W multiples of pad_multiple
    scale: tuple[float, float]  # input pixels per photo pixel, (x, y)
    photo_size: tuple[int, int]  # (width, height) of the photo as given


def scaled_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the long side at `long_side`, never upscaled past the photo."""
    factor = min(1.0, long_side / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def padded(size: int, multiple: int) -> int:
    return max(multiple, math.ceil(size / multiple) * multiple)


def normalise(rgb: np.ndarray, cfg: DetectorPreprocess) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (3, H', W') normalised and zero-padded (zero is the mean
    colour after normalisation) to multiples of `pad_multiple`."""
    height, width = rgb.shape[:2]
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    scaled = (rgb.astype(np.float32) * np.float32(1 / 255) - mean) / std
    out = np.zeros(
        (3, padded(height, cfg.pad_multiple), padded(width, cfg.pad_multiple)), dtype=np.float32
    )
    out[:, :height, :width] = scaled.transpose(2, 0, 1)
    return out


def prepare(image: Image.Image, cfg: DetectorPreprocess) -> PreparedImage:
    """Scale, normalise and pad one upright photo.

    A JPEG that is not loaded yet is decoded at a reduced scale (Pillow's `draft`: 1/2, 1/4 or
    1/8 in the DCT), which takes most of the decoding time off a 12 MP photo; the result is
    never smaller than the target size, so the final resize is the same downscale either way.
    """
    photo_size = image.size
    target = scaled_size(*photo_size, cfg.long_side)
    if image.format == "JPEG":
        image.draft("RGB", target)  # no effect once the image is loaded
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != target:
        image = image.resize(target, Image.Resampling.BILINEAR)
    rgb = np.asarray(image, dtype=np.uint8)
    scale = (target[0] / photo_size[0], target[1] / photo_size[1])
    return PreparedImage(normalise(rgb, cfg), scale, photo_size)
