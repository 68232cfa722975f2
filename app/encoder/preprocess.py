"""Image preprocessing shared by training and serving, so both see pixels the same way."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:  # torch and torchvision load only where tensors are made (training, eval)
    import torch
    from torchvision import transforms as T

# Formats a product photo realistically arrives in; anything else is refused (415).
# MPO is how Pillow names the multi-picture JPEGs many phones write; the first frame is used.
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF"})
# Resizing scales the shorter side to ~image size, so a 200000x1 strip would become gigapixels.
MAX_ASPECT_RATIO = 20
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


class ImageDecodeError(ValueError):
    """An upload that is not a usable image; `status` is the HTTP code it maps to."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode upload bytes into an RGB image, refusing non-images, truncation and bombs."""
    return decode_image_with_format(data, max_pixels)[0]


def decode_image_with_format(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """As `decode_image`, also returning the container format (JPEG, PNG, ...)."""
    if not data:
        raise ImageDecodeError("empty file")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("image has too many pixels", 422) from exc
    except Exception as exc:  # PIL raises several types for unreadable bytes
        raise ImageDecodeError("file is not a decodable image") from exc
    if image.format not in ALLOWED_FORMATS:
        raise ImageDecodeError(f"unsupported image format: {image.format}", 415)
    # Check the header's size before decoding any pixel data, so a bomb costs nothing.
    if image.width * image.height > max_pixels:
        raise ImageDecodeError("image has too many pixels", 422)
    if max(image.size) > MAX_ASPECT_RATIO * max(1, min(image.size)):
        raise ImageDecodeError(f"image aspect ratio is over {MAX_ASPECT_RATIO}:1", 422)
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("image has too many pixels", 422) from exc
    except Exception as exc:
        raise ImageDecodeError("image is truncated or corrupt") from exc
    image_format = "JPEG" if image.format == "MPO" else str(image.format)
    upright: Image.Image = image
    # A broken EXIF block should not cost the photo: keep it unrotated.
    with contextlib.suppress(Exception):
        upright = ImageOps.exif_transpose(image)
    try:
        return upright.convert("RGB"), image_format
    except Exception as exc:
        raise ImageDecodeError("image is truncated or corrupt") from exc


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

    resize_to = round(cfg.image_size / cfg.crop_pct)
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
    resize_to = round(cfg.image_size / cfg.crop_pct)
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
