"""Image preprocessing shared by training and serving, so both see pixels the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch and torchvision load only where tensors are made (training, eval)
    import torch
    from torchvision import transforms as T

RESIZE_MODES = ("crop", "pad")


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes a tensor; stored inside every checkpoint."""

    image_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # Resize the shorter side to image_size / crop_pct, then centre-crop (timm convention).
    crop_pct: float = 0.875
    # "crop": resize + centre crop (cuts the long side of a tall bottle or a wide box);
    # "pad": first pad to a square with `pad_fill`, so the whole product stays in view.
    resize_mode: str = "crop"
    pad_fill: int = 255
    # Test-time view: average the embedding of the image and of its mirror image.
    flip: bool = False
    # Degraded copies of every reference image stored as extra vectors (app/encoder/views.py).
    reference_views: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, not {self.resize_mode!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        # Keys added later default to the behaviour checkpoints had before they existed.
        return cls(
            image_size=int(data["image_size"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            crop_pct=float(data.get("crop_pct", 0.875)),
            resize_mode=str(data.get("resize_mode", "crop")),
            pad_fill=int(data.get("pad_fill", 255)),
            flip=bool(data.get("flip", False)),
            reference_views=tuple(str(v) for v in data.get("reference_views", ())),
        )


def input_side(cfg: PreprocessConfig) -> int:
    """The side `eval_pixels` resizes to: an image (or region) needs at least this many pixels
    across (its shorter side when cropping, its longer when padding) to lose nothing."""
    return round(cfg.image_size / cfg.crop_pct)


def reduction_for(cfg: PreprocessConfig, regions: list[tuple[float, float]]) -> int:
    """How far a photo may be reduced while decoding (1, 2, 4 or 8) so that the smallest of
    these regions (width, height in full-size pixels; the whole photo is one) still covers the
    model's input."""
    side = input_side(cfg)
    pick = min if cfg.resize_mode == "crop" else max
    across = min((pick(w, h) for w, h in regions), default=0)
    factor = 1
    while factor < 8 and across / (factor * 2) >= side:
        factor *= 2
    return factor


def whole_photo(cfg: PreprocessConfig) -> Callable[[int, int], int]:
    """The `Reduction` of a photo the model sees whole."""
    return lambda width, height: reduction_for(cfg, [(width, height)])


def pad_to_square(image: Image.Image, fill: int = 255) -> Image.Image:
    """Centre the image on a square canvas of its longer side: nothing of the product is cut."""
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), (fill, fill, fill))
    canvas.paste(image.convert("RGB"), ((side - w) // 2, (side - h) // 2))
    return canvas


class PadToSquare:
    """`pad_to_square` as a transform step (a class, so DataLoader workers can pickle it)."""

    def __init__(self, fill: int = 255) -> None:
        self.fill = fill

    def __call__(self, image: Image.Image) -> Image.Image:
        return pad_to_square(image, self.fill)


def _framing(cfg: PreprocessConfig) -> list[Callable[[Image.Image], Image.Image]]:
    return [PadToSquare(cfg.pad_fill)] if cfg.resize_mode == "pad" else []


def eval_transform(cfg: PreprocessConfig) -> T.Compose:
    """The deterministic transform of evaluation and training, as torchvision tensors; the
    service computes the same pixels with `eval_pixels` (tested equal), without torch."""
    from torchvision import transforms as T

    resize_to = input_side(cfg)
    return T.Compose(
        [
            *_framing(cfg),
            T.Resize(resize_to, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(cfg.image_size),
            T.ToTensor(),
            T.Normalize(cfg.mean, cfg.std),
        ]
    )


def train_transform(cfg: PreprocessConfig) -> T.Compose:
    """Augmentations for finetuning; ends in the same tensor layout and normalisation as eval."""
    from torchvision import transforms as T

    return T.Compose(
        [
            *_framing(cfg),
            T.RandomResizedCrop(
                cfg.image_size, scale=(0.35, 1.0), interpolation=T.InterpolationMode.BICUBIC
            ),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.3, 0.3, 0.2, 0.02),
            T.ToTensor(),
            T.Normalize(cfg.mean, cfg.std),
        ]
    )


def to_batch(images: list[Image.Image], cfg: PreprocessConfig) -> torch.Tensor:
    import torch

    transform = eval_transform(cfg)
    return torch.stack([transform(image) for image in images])


def eval_pixels(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """`eval_transform` in PIL and numpy: the same float32 (3, size, size) pixels, step for step
    as torchvision computes them (shorter side resized with PIL's bicubic, centre crop rounded as
    torchvision rounds it, /255, then (x - mean) / std), so serving needs no torch."""
    for step in _framing(cfg):
        image = step(image)
    resize_to = input_side(cfg)
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    if short != resize_to:
        other = int(resize_to * long / short)
        image = image.resize(
            (resize_to, other) if w <= h else (other, resize_to), Image.Resampling.BICUBIC
        )
    w, h = image.size
    size = cfg.image_size
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    scaled = pixels.astype(np.float32) / np.float32(255)
    mean = np.asarray(cfg.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(cfg.std, dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((scaled - mean) / std)


def eval_batch(images: list[Image.Image], cfg: PreprocessConfig) -> np.ndarray:
    """`eval_pixels` of each image, stacked: what an encoder's `embed` feeds its forward pass."""
    return np.stack([eval_pixels(image, cfg) for image in images])
