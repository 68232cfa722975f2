"""Label artwork for rendered products: real package faces, recoloured, and drawn designs.

The Grocery Store set has 31 packaged products, almost all cartons; a corner shop sells cans,
bottles and multipacks in every colour. So every face is drawn from a wider pool: a crop of a
catalogue shot or of an in-store photo, its hue turned at random, or a design drawn here
(colour fields, bands, a badge, big letters: what packaging is made of).
"""

from __future__ import annotations

import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.shelves.sources import SourceBank, instore_crop

_FONTS: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    size = max(6, min(size, 200))
    if size not in _FONTS:
        _FONTS[size] = ImageFont.load_default(size=size)  # Pillow's own font: no system files
    return _FONTS[size]


def random_colour(rng: np.random.Generator, vivid: bool = True) -> tuple[int, int, int]:
    if vivid and rng.random() < 0.75:
        hsv = np.array(
            [[[rng.integers(0, 256), rng.integers(120, 256), rng.integers(90, 256)]]], np.uint8
        )
        r, g, b = Image.fromarray(hsv, "HSV").convert("RGB").getpixel((0, 0))  # type: ignore[misc]
        return int(r), int(g), int(b)
    v = int(rng.integers(0, 256))
    return v, v, v


def resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = max(1, size[0]), max(1, size[1])
    if (rgb.shape[1], rgb.shape[0]) == (w, h):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))


def shift_hue(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(rng.integers(0, 256))) % 256
    if rng.random() < 0.3:
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.6, 1.6), 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def drawn_label(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A made-up package face: background colour, bands, a badge, a brand word, small print."""
    w, h = max(8, size[0]), max(8, size[1])
    image = Image.new("RGB", (w, h), random_colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 4))):
        y = rng.uniform(-0.2, 1.0) * h
        band = rng.uniform(0.05, 0.4) * h
        slope = rng.uniform(-0.3, 0.3) * w
        draw.polygon(
            [(0, y), (w, y + slope), (w, y + slope + band), (0, y + band)], fill=random_colour(rng)
        )
    if rng.random() < 0.6:
        r = rng.uniform(0.15, 0.45) * w
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        draw.ellipse(
            (cx - r, cy - r * rng.uniform(0.5, 1.2), cx + r, cy + r), fill=random_colour(rng)
        )
    letters = string.ascii_uppercase + string.ascii_lowercase
    word = "".join(rng.choice(list(letters), size=int(rng.integers(2, 8))))
    size_px = int(w / max(1, len(word)) * rng.uniform(1.0, 1.8))
    text = Image.new("RGBA", (w * 2, max(8, size_px * 2)), (0, 0, 0, 0))
    ImageDraw.Draw(text).text((0, 0), word, fill=random_colour(rng), font=font(size_px))
    if rng.random() < 0.4:
        text = text.rotate(90, expand=True)  # cans and bottles often read bottom to top
    box = text.getbbox()
    if box:
        text = text.crop(box)
        x = int(rng.uniform(-0.1, 0.6) * w)
        y = int(rng.uniform(0.0, 0.7) * h)
        image.paste(text, (x, y), text)
    for _ in range(int(rng.integers(0, 5))):  # small print
        y = int(rng.uniform(0, 1) * h)
        draw.text(
            (int(rng.uniform(0, 0.5) * w), y),
            "ABC 123"[: int(rng.integers(2, 8))],
            fill=random_colour(rng, vivid=False),
            font=font(max(6, h // 25)),
        )
    return np.asarray(image)


def package_face(bank: SourceBank, rng: np.random.Generator, instore: bool) -> np.ndarray:
    """A real package face: a catalogue cut-out's pixels, or an in-store crop."""
    if instore and bank.instore and rng.random() < 0.55:
        return instore_crop(bank.instore[int(rng.integers(len(bank.instore)))], rng)
    pool = bank.packages or bank.cutouts
    sprite = pool[int(rng.integers(len(pool)))]
    # Catalogue cartons are seen slightly from the side: keep the front face's middle part.
    h, w = sprite.rgb.shape[:2]
    x0, x1 = int(w * rng.uniform(0, 0.25)), int(w * rng.uniform(0.75, 1.0))
    y0, y1 = int(h * rng.uniform(0, 0.3)), int(h * rng.uniform(0.8, 1.0))
    return sprite.rgb[y0:y1, x0:x1]


def label_texture(
    bank: SourceBank, size: tuple[int, int], rng: np.random.Generator, instore: bool = True
) -> np.ndarray:
    """Artwork for one product face at `size` (w, h)."""
    if rng.random() < 0.4:
        face = drawn_label(size, rng)
    else:
        face = resize(package_face(bank, rng, instore), size)
    if rng.random() < 0.5:
        face = shift_hue(face, rng)
    if rng.random() < 0.5:
        face = face[:, ::-1]
    return np.ascontiguousarray(face)
