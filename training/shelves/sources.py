"""What shelves are made of: product cut-outs and in-store crops from the Grocery Store set.

- Catalogue shots (`iconic-images-and-descriptions/**/*_Iconic.jpg`, 81 products on white):
  the product is cut out by flood-filling the near-white background from the border.
- In-store photos (`train/`): a packaged product is held up in the middle of most `Packages`
  photos, so a jittered centre crop is a facing with real light, blur and wrinkles; the fruit
  and vegetable photos are bins of loose produce, used as distractor texture (not products).

Only the MIT-licensed Grocery Store set is read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

# Shrunk on load: products are at most a few hundred pixels at the renderer's working scale.
PHOTO_SIDE = 256


@dataclass
class Sprite:
    """An RGBA product image: uint8 (h, w, 3) colour and float32 (h, w) coverage in [0, 1]."""

    rgb: np.ndarray
    alpha: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


@dataclass
class SourceBank:
    cutouts: list[Sprite] = field(default_factory=list)  # all 81 catalogue products
    packages: list[Sprite] = field(default_factory=list)  # the packaged ones among them
    instore: list[np.ndarray] = field(default_factory=list)  # packaged-goods photos (RGB)
    produce: list[np.ndarray] = field(default_factory=list)  # fruit/vegetable photos (RGB)


def cut_out(rgb: np.ndarray, threshold: int = 232, convex: bool = False) -> Sprite:
    """The product of a catalogue shot: background = near-white pixels connected to the border.

    `convex`: fill the mask's convex hull (packages are convex; a white carton front touching
    the white background would otherwise be cut away with it)."""
    light = (rgb.min(axis=2) >= threshold) & (np.ptp(rgb, axis=2) < 20)
    labels, _ = ndimage.label(light)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, border[border > 0])
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(~background, iterations=1))
    if convex and mask.sum() >= 3:
        mask = convex_hull(mask)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return Sprite(rgb, np.ones(rgb.shape[:2], np.float32))
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    # A one-pixel soft edge: hard masks leave a white fringe once resized.
    alpha = ndimage.uniform_filter(mask.astype(np.float32), size=3)
    alpha = np.clip((alpha - 0.2) / 0.6, 0, 1)
    return Sprite(np.ascontiguousarray(rgb[y0:y1, x0:x1]), alpha[y0:y1, x0:x1])


def convex_hull(mask: np.ndarray) -> np.ndarray:
    from PIL import ImageDraw
    from scipy.spatial import ConvexHull, QhullError

    ys, xs = np.nonzero(mask)
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except QhullError:  # all points on a line
        return mask
    canvas = Image.new("L", (mask.shape[1], mask.shape[0]), 0)
    ImageDraw.Draw(canvas).polygon([tuple(points[i]) for i in hull.vertices], fill=1, outline=1)
    return np.asarray(canvas, dtype=bool) | mask


def _read(path: Path, side: int | None = None) -> np.ndarray:
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if side is not None and max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def load_bank(
    root: str | Path,
    instore: bool = True,
    max_photos: int | None = 1600,
    seed: int = 0,
) -> SourceBank:
    """Cut-outs of every catalogue shot and, with `instore`, a seeded sample of the train photos."""
    root = Path(root)
    bank = SourceBank()
    for path in sorted(root.glob("iconic-images-and-descriptions/**/*_Iconic.jpg")):
        package = "/Packages/" in path.as_posix()
        sprite = cut_out(_read(path), convex=package)
        bank.cutouts.append(sprite)
        if package:
            bank.packages.append(sprite)
    if not bank.cutouts:
        raise FileNotFoundError(f"no catalogue shots (*_Iconic.jpg) under {root}")
    if not instore:
        return bank
    lines = (root / "train.txt").read_text().splitlines()
    paths = sorted(line.split(",")[0].strip() for line in lines if line.strip())
    rng = np.random.default_rng(seed)
    if max_photos is not None and len(paths) > max_photos:
        paths = sorted(rng.choice(paths, size=max_photos, replace=False).tolist())
    for rel in paths:
        pixels = _read(root / rel, PHOTO_SIDE)
        (bank.instore if rel.startswith("train/Packages/") else bank.produce).append(pixels)
    return bank


def instore_crop(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A jittered centre crop of an in-store photo: the held-up package, roughly."""
    h, w = photo.shape[:2]
    cw = int(w * rng.uniform(0.3, 0.55))
    ch = int(h * rng.uniform(0.45, 0.85))
    cx = int(w / 2 + rng.uniform(-0.1, 0.1) * w)
    cy = int(h / 2 + rng.uniform(-0.12, 0.08) * h)
    x0 = int(np.clip(cx - cw // 2, 0, w - cw))
    y0 = int(np.clip(cy - ch // 2, 0, h - ch))
    return photo[y0 : y0 + ch, x0 : x0 + cw]


def random_patch(photo: np.ndarray, rng: np.random.Generator, frac: float = 0.5) -> np.ndarray:
    h, w = photo.shape[:2]
    cw, ch = max(8, int(w * rng.uniform(frac, 1))), max(8, int(h * rng.uniform(frac, 1)))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return photo[y0 : y0 + ch, x0 : x0 + cw]
