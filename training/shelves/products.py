"""Product shapes: cans, bottles, cartons, bags, tubs, multipacks and catalogue cut-outs.

Each maker returns a `Sprite` of exactly the size asked for, whose opaque pixels are the
product's full extent (so a product pasted in the open has its box exactly at the sprite's
bounds). Shading is what tells a can from a carton: a cylinder is dark at its edges and has a
vertical specular stripe; a shrink-wrapped pack bulges once per item inside.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.shelves.sources import SourceBank, Sprite
from training.shelves.textures import label_texture, random_colour, resize

# Height / width of each kind, drawn uniformly in the range.
ASPECTS: dict[str, tuple[float, float]] = {
    "can": (1.3, 2.4),
    "bottle": (2.0, 4.5),
    "carton": (1.2, 2.8),
    "box": (0.5, 1.6),
    "bag": (1.0, 1.7),
    "tub": (0.6, 1.2),
    "multipack": (0.45, 1.1),
    "cutout": (0.0, 0.0),  # the catalogue shot's own aspect
}


def cylinder_shade(w: int, rng: np.random.Generator, strength: float = 0.5) -> np.ndarray:
    """(w,) brightness across a cylinder, with one specular stripe."""
    x = (np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1
    shade = 1 - strength * (1 - np.sqrt(np.clip(1 - x**2, 0, 1)))
    centre, width = rng.uniform(-0.6, 0.1), rng.uniform(0.04, 0.15)
    shine = rng.uniform(0.2, 0.8) * np.exp(-((x - centre) ** 2) / (2 * width**2))
    return (shade + shine).astype(np.float32)


def lit(rgb: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """Apply a brightness profile; above 1 it blends to white (a highlight), not past it."""
    f = rgb.astype(np.float32) / 255
    s = shade[None, :, None] if shade.ndim == 1 else shade[..., None]
    dark = f * np.minimum(s, 1)
    out = dark + (1 - dark) * np.clip(s - 1, 0, 1)
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def rounded_alpha(w: int, h: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    r = max(0.5, radius)
    dx = np.maximum(np.maximum(r - xx, xx - (w - r)), 0)
    dy = np.maximum(np.maximum(r - yy, yy - (h - r)), 0)
    return np.clip(r - np.sqrt(dx**2 + dy**2) + 0.5, 0, 1).astype(np.float32)


def make_can(face: np.ndarray, w: int, h: int, rng: np.random.Generator) -> Sprite:
    rgb = lit(face, cylinder_shade(w, rng, 0.55))
    rim = max(1, int(h * rng.uniform(0.03, 0.08)))
    metal = lit(np.full((rim, w, 3), int(rng.integers(150, 230)), np.uint8), cylinder_shade(w, rng))
    rgb[:rim] = metal
    rgb[-max(1, rim // 2) :] = metal[: max(1, rim // 2)]
    return Sprite(rgb, rounded_alpha(w, h, min(w * 0.12, rim * 1.5)))


def make_bottle(face: np.ndarray, w: int, h: int, rng: np.random.Generator) -> Sprite:
    """Body, shoulder, neck and cap; the label covers part of the body, the rest is liquid
    behind clear plastic (partly see-through) or coloured glass."""
    neck_w = rng.uniform(0.28, 0.5)
    neck_y, shoulder_y = rng.uniform(0.08, 0.22), rng.uniform(0.25, 0.5)
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h
    t = np.clip((ys - neck_y) / max(1e-3, shoulder_y - neck_y), 0, 1)
    half = np.where(ys < neck_y, neck_w, neck_w + (1 - neck_w) * np.sin(t * np.pi / 2)) / 2
    cap = rng.uniform(0.03, 0.08)
    half = np.where(ys < cap, neck_w * 0.55, half)
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    alpha = np.clip((half[:, None] - np.abs(xs)[None, :]) * w + 0.5, 0, 1)
    kind = rng.choice(["plastic", "glass", "water"], p=[0.55, 0.25, 0.2])
    glass, water = kind == "glass", kind == "water"
    liquid = np.array(random_colour(rng, vivid=not glass or rng.random() < 0.3), np.float32)
    if glass:
        liquid *= rng.uniform(0.2, 0.6)
    if water:  # still water: nearly clear, a faint blue, the shelf behind shows through
        liquid = np.array([200, 220, 240], np.float32) * rng.uniform(0.7, 1.1)
    body = np.broadcast_to(liquid, (h, w, 3)).astype(np.uint8)
    rgb = lit(body, cylinder_shade(w, rng, 0.6))
    top, bottom = int(h * rng.uniform(shoulder_y, 0.6)), int(h * rng.uniform(0.75, 0.97))
    if water:
        top, bottom = int(h * rng.uniform(0.4, 0.55)), int(h * rng.uniform(0.6, 0.75))
    if bottom - top > 2:
        rgb[top:bottom] = lit(resize(face, (w, bottom - top)), cylinder_shade(w, rng, 0.45))
    rgb[: max(1, int(h * cap))] = random_colour(rng)
    opacity = np.ones(h, np.float32)
    if not glass:  # clear plastic: the back of the fridge shows through where there is no label
        clear = rng.uniform(0.3, 0.6) if water else rng.uniform(0.55, 0.95)
        opacity[int(h * cap) :] = clear
        opacity[top:bottom] = 1.0
    return Sprite(rgb, (alpha * opacity[:, None]).astype(np.float32))


def make_box(face: np.ndarray, w: int, h: int, rng: np.random.Generator) -> Sprite:
    ramp = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.1), w, dtype=np.float32)
    rgb = lit(face, ramp)
    alpha = np.ones((h, w), np.float32)
    if rng.random() < 0.35:  # a carton's gable top, or a box's lid seen from slightly above
        top = max(1, int(h * rng.uniform(0.05, 0.15)))
        rgb[:top] = lit(rgb[:top], np.full(w, rng.uniform(0.6, 1.2), np.float32))
    return Sprite(rgb, alpha)


def make_bag(face: np.ndarray, w: int, h: int, rng: np.random.Generator) -> Sprite:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pillow = 1 - 0.35 * (np.abs(xx / w * 2 - 1) ** 3 + np.abs(yy / h * 2 - 1) ** 3)
    wrinkles = 1 + 0.08 * np.sin(xx / max(2, w) * rng.uniform(6, 20) + rng.uniform(0, 6))
    rgb = lit(face, pillow * wrinkles)
    crimp = max(1, int(h * rng.uniform(0.02, 0.06)))
    alpha = rounded_alpha(w, h, w * 0.1)
    teeth = ((np.arange(w) // max(1, crimp)) % 2).astype(bool)
    alpha[:crimp, teeth] = 0
    alpha[-crimp:, teeth] = 0
    return Sprite(rgb, alpha)


def make_tub(face: np.ndarray, w: int, h: int, rng: np.random.Generator) -> Sprite:
    taper = rng.uniform(0.0, 0.15)
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h
    half = 0.5 - taper * ys
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    alpha = np.clip((half[:, None] - np.abs(xs)[None, :]) * w + 0.5, 0, 1).astype(np.float32)
    rgb = lit(face, cylinder_shade(w, rng, 0.4))
    lid = max(1, int(h * rng.uniform(0.08, 0.2)))
    rgb[:lid] = random_colour(rng)
    return Sprite(rgb, alpha)


def make_multipack(
    face: np.ndarray, w: int, h: int, rng: np.random.Generator, item: str = ""
) -> Sprite:
    """Cans or bottles side by side in shrink film, the pack's artwork printed across."""
    item = item or ("can" if rng.random() < 0.55 else "bottle")
    n = max(1, min(int(rng.integers(2, 5)), w // 2))
    iw = w // n
    item_h = max(1, int(h * rng.uniform(0.85, 1.0)))
    rgb = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.float32)
    single = resize(face, (iw, item_h))
    maker = make_can if item == "can" else make_bottle
    for i in range(n):
        sprite = maker(single, iw, item_h, rng)
        x0 = i * iw
        rgb[h - item_h :, x0 : x0 + iw] = sprite.rgb
        alpha[h - item_h :, x0 : x0 + iw] = sprite.alpha
    film_top = int(h * rng.uniform(0.0, 0.45))
    band = lit(resize(face, (w, h - film_top)), np.resize(cylinder_shade(iw, rng, 0.3), w))
    strength = rng.uniform(0.55, 0.95)
    region = slice(film_top, h)
    rgb[region] = (rgb[region] * (1 - strength) + band * strength).astype(np.uint8)
    alpha[region] = np.maximum(alpha[region], strength)
    alpha[h - max(1, h // 20) :] = 1.0  # the tray or the film's fold at the bottom
    return Sprite(rgb, alpha)


def make_cutout(bank: SourceBank, w: int, h: int, rng: np.random.Generator) -> Sprite:
    pool = bank.packages if rng.random() < 0.85 and bank.packages else bank.cutouts
    sprite = pool[int(rng.integers(len(pool)))]
    return Sprite(resize(sprite.rgb, (w, h)), resize_alpha(sprite.alpha, (w, h)))


def resize_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    scaled = Image.fromarray((alpha * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(scaled, dtype=np.float32) / 255


MAKERS: dict[str, Callable[[np.ndarray, int, int, np.random.Generator], Sprite]] = {
    "can": make_can,
    "bottle": make_bottle,
    "carton": make_box,
    "box": make_box,
    "bag": make_bag,
    "tub": make_tub,
    "multipack": make_multipack,
}


def cutout_aspect(bank: SourceBank, rng: np.random.Generator) -> float:
    sprite = bank.packages[int(rng.integers(len(bank.packages)))] if bank.packages else None
    return 2.0 if sprite is None else sprite.rgb.shape[0] / sprite.rgb.shape[1]


def make_product(
    bank: SourceBank,
    kind: str,
    w: int,
    h: int,
    rng: np.random.Generator,
    instore: bool = True,
    face: np.ndarray | None = None,
) -> Sprite:
    """One product of `kind` at (w, h); pass `face` to repeat the same artwork (facings)."""
    if kind == "cutout":
        return make_cutout(bank, w, h, rng)
    if face is None:
        face = label_texture(bank, (w, h), rng, instore)
    return MAKERS[kind](resize(face, (w, h)), w, h, rng)
