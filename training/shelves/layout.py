"""Rows of facings: how products stand on a shelf.

A row is runs of one product repeated side by side (1-9 facings, touching or nearly), runs
next to each other, now and then an empty gap. Behind the front facings stands a second copy
of the same product a little higher up (the next one in the lane, as a camera above the shelf
sees it): only its top shows, so it is background or an ignore region (canvas.py), unless the
front facing is missing and it is seen whole. Boxes, bags, tubs and multipacks are sometimes
stacked two or three high.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.shelves.canvas import Canvas
from training.shelves.products import ASPECTS, cutout_aspect, make_product
from training.shelves.sources import SourceBank

STACKABLE = ("box", "carton", "multipack", "tub", "bag")


@dataclass(frozen=True)
class KindMix:
    """Relative frequency of each product kind in a row."""

    weights: tuple[tuple[str, float], ...]

    def draw(self, rng: np.random.Generator) -> str:
        kinds, w = zip(*self.weights, strict=True)
        p = np.asarray(w, np.float64)
        return str(kinds[int(rng.choice(len(kinds), p=p / p.sum()))])


SHELF_MIX = KindMix(
    (
        ("can", 2),
        ("bottle", 2.5),
        ("carton", 1.5),
        ("box", 1.5),
        ("bag", 0.8),
        ("tub", 0.6),
        ("multipack", 1.5),
        ("cutout", 0.8),
    )
)
FRIDGE_MIX = KindMix(
    (("can", 3), ("bottle", 4), ("carton", 1), ("tub", 0.5), ("multipack", 1.5), ("cutout", 0.5))
)


def product_size(
    bank: SourceBank, kind: str, height: float, rng: np.random.Generator
) -> tuple[int, int]:
    lo, hi = ASPECTS[kind]
    aspect = (
        cutout_aspect(bank, rng) * rng.uniform(0.85, 1.15)
        if kind == "cutout"
        else rng.uniform(lo, hi)
    )
    h = max(6, int(height))
    return max(4, int(h / aspect)), h


def fill_row(
    canvas: Canvas,
    bank: SourceBank,
    rng: np.random.Generator,
    floor: int,
    row_height: int,
    product_height: float,
    mix: KindMix,
    instore: bool,
    back_rows: bool,
    ceiling: int | None = None,
) -> None:
    """Fill one row, left to right, standing on y = `floor`; now and then leave it empty.
    Nothing reaches above `ceiling` (the board over the row, painted already)."""
    ceiling = floor - row_height if ceiling is None else ceiling
    if rng.random() < 0.05:
        return
    x = int(-rng.uniform(0, 0.5) * product_height)
    while x < canvas.width:
        if rng.random() < 0.06:  # an empty lane: the back of the shelf shows
            x += int(product_height * rng.uniform(0.3, 1.5))
            continue
        kind = mix.draw(rng)
        stack = 1
        h_run = min(row_height * 0.98, product_height * rng.uniform(0.75, 1.2))
        if kind in STACKABLE and rng.random() < 0.3:  # two or three layers fill the row
            stack = int(rng.choice([2, 2, 3]))
            h_run = row_height * rng.uniform(0.85, 0.98) / stack
        w, h = product_size(bank, kind, h_run, rng)
        sprite = make_product(bank, kind, w, h, rng, instore)
        facings = min(int(rng.geometric(0.28)), 9)
        tight = rng.random() < 0.7
        for _ in range(facings):
            if x >= canvas.width:
                break
            gap = int(rng.integers(0, 3)) if tight else int(w * rng.uniform(0.02, 0.15))
            jitter = int(rng.integers(-1, 2))
            missing = rng.random() < 0.05
            for level in range(stack):
                top = floor - h * (level + 1) + jitter
                if back_rows and level == stack - 1:
                    # Seen from above the shelf, the next one in the lane shows its top.
                    rise = min(int(h * rng.uniform(0.03, 0.35)), max(0, top - ceiling))
                    canvas.paste(
                        sprite,
                        x + int(rng.integers(-2, 3)),
                        top - rise,
                        kind,
                        brightness=rng.uniform(0.55, 1.0),
                    )
                if not missing:
                    canvas.paste(sprite, x, top, kind, brightness=rng.uniform(0.9, 1.1))
            x += w + gap
        x += int(rng.integers(0, 3)) if rng.random() < 0.6 else int(w * rng.uniform(0.05, 0.4))


def fill_closeup(
    canvas: Canvas, bank: SourceBank, rng: np.random.Generator, mix: KindMix, instore: bool
) -> None:
    """One to three products filling much of the frame, as in a photo of one product."""
    count = int(rng.choice([1, 1, 2, 3]))
    height = canvas.height * rng.uniform(0.35, 0.9)
    floor = int(canvas.height * rng.uniform(0.6, 1.0) + height * rng.uniform(0, 0.3))
    floor = min(floor, canvas.height + int(height * 0.05))
    x = int(canvas.width * rng.uniform(0.0, 0.4))
    for _ in range(count):
        kind = mix.draw(rng)
        w, h = product_size(bank, kind, height * rng.uniform(0.85, 1.0), rng)
        if w > canvas.width * 0.95:
            w, h = int(canvas.width * 0.9), int(h * canvas.width * 0.9 / w)
        sprite = make_product(bank, kind, w, h, rng, instore)
        canvas.paste(sprite, x, floor - h, kind)
        x += w + int(rng.integers(0, max(2, w // 3)))
