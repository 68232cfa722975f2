"""Training augmentations that imitate the catalogue -> shelf gap.

A catalogue shot is large, sharp and evenly lit; the same product on a shelf is a small, blurred,
re-compressed crop seen at an angle, under store lighting, partly hidden by a price tag or a
neighbour. `shelf_transform` draws those degradations at random so that the encoder learns to
map both to one point. It ends in the same tensor layout and normalisation as `eval_transform`.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter
from torchvision import transforms as T

from app.encoder.preprocess import PadToSquare, PreprocessConfig, train_transform

AUGMENTS = ("basic", "shelf")


class RandomDownscale:
    """Shrink the longer side to 32-128 px and back: the detail a distant shelf crop has."""

    def __init__(self, low: int = 32, high: int = 128) -> None:
        self.low, self.high = low, high

    def __call__(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        side = random.randint(self.low, self.high)
        scale = side / max(w, h)
        if scale >= 1:
            return image
        small = image.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
        )
        return small.resize((w, h), Image.Resampling.BICUBIC)


class RandomJpeg:
    def __init__(self, low: int = 15, high: int = 70) -> None:
        self.low, self.high = low, high

    def __call__(self, image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.convert("RGB").save(
            buffer, format="JPEG", quality=random.randint(self.low, self.high)
        )
        buffer.seek(0)
        return Image.open(buffer).convert("RGB")


class RandomBlur:
    def __call__(self, image: Image.Image) -> Image.Image:
        radius = random.uniform(0.5, 2.5) * max(image.size) / 160
        return image.filter(ImageFilter.GaussianBlur(radius=radius))


class RandomGlare:
    """A soft bright ellipse: light reflected by a glossy package or a fridge door."""

    def __call__(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        mask = Image.new("L", (w, h), 0)
        rx, ry = random.uniform(0.1, 0.35) * w, random.uniform(0.1, 0.35) * h
        cx, cy = random.uniform(0, w), random.uniform(0, h)
        ImageDraw.Draw(mask).ellipse(
            (cx - rx, cy - ry, cx + rx, cy + ry), fill=random.randint(90, 200)
        )
        mask = mask.filter(ImageFilter.GaussianBlur(radius=max(1.0, min(rx, ry) / 2)))
        white = Image.new("RGB", (w, h), (255, 255, 255))
        return Image.composite(white, image.convert("RGB"), mask)


def shelf_transform(cfg: PreprocessConfig) -> T.Compose:
    framing = [PadToSquare(cfg.pad_fill)] if cfg.resize_mode == "pad" else []
    return T.Compose(
        [
            *framing,
            T.RandomPerspective(distortion_scale=0.25, p=0.3, fill=cfg.pad_fill),
            T.RandomResizedCrop(
                cfg.image_size, scale=(0.45, 1.0), interpolation=T.InterpolationMode.BICUBIC
            ),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.4, 0.35, 0.3, 0.03),
            T.RandomApply([RandomDownscale()], p=0.5),
            T.RandomApply([RandomBlur()], p=0.3),
            T.RandomApply([RandomGlare()], p=0.15),
            T.RandomApply([RandomJpeg()], p=0.3),
            T.ToTensor(),
            T.Normalize(cfg.mean, cfg.std),
            # Partial occlusion: a price tag, a shelf edge, a neighbouring product.
            T.RandomErasing(p=0.25, scale=(0.02, 0.15), value=0),
        ]
    )


def make_train_transform(cfg: PreprocessConfig, augment: str) -> T.Compose:
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, not {augment!r}")
    return shelf_transform(cfg) if augment == "shelf" else train_transform(cfg)
