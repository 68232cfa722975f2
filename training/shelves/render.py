"""One synthetic shelf photo with exact boxes: `render_shelf(bank, seed, config)`.

Rendered at the detector's working resolution (long side `long_side`, 1024 px by default): a
1-12 MP phone photo is scaled to that size before detection anyway, so products 20-600 px on
the photo are about 12-300 px here, the range drawn by `product_px`. Training crops and
rescales these canvases (training/detector/data.py).

Scenes: an open shelf (boards, price rails, signs), or a drinks fridge (dark or lit inside,
wire shelves, price rings, and glass doors in front with frames, reflections and glare). The
same seed and config always give the same photo.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from training.shelves import fixtures
from training.shelves.canvas import Canvas, ShelfLabels, labels
from training.shelves.effects import camera, random_view, source_pixels_per_output, warp
from training.shelves.layout import FRIDGE_MIX, SHELF_MIX, fill_closeup, fill_row
from training.shelves.sources import SourceBank

ASPECTS = ((3, 4), (3, 4), (3, 4), (4, 3), (1, 1), (9, 16), (16, 9))


@dataclass(frozen=True)
class RenderConfig:
    long_side: int = 1024
    # Typical product height in one photo, drawn log-uniformly per photo (working pixels).
    product_px: tuple[float, float] = (24.0, 300.0)
    instore: bool = True  # in-store photo crops as product faces (else catalogue cut-outs only)
    glass: bool = True  # fridge doors: glass, frames, reflections, glare
    fridge_share: float = 0.45
    closeup_share: float = 0.06  # one to three products filling the frame (a product photo)
    perspective: float = 0.12  # strength of yaw/pitch; 0 = a frontal photo
    back_rows: bool = True
    distractors: bool = True
    min_visible: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "product_px" in known:
            known["product_px"] = tuple(float(v) for v in known["product_px"])
        return cls(**known)


@dataclass
class RenderedShelf:
    image: np.ndarray  # uint8 (H, W, 3)
    labels: ShelfLabels
    scene: str


def canvas_size(rng: np.random.Generator, long_side: int) -> tuple[int, int]:
    a, b = ASPECTS[int(rng.integers(len(ASPECTS)))]
    if a >= b:
        return long_side, max(64, round(long_side * b / a))
    return max(64, round(long_side * a / b)), long_side


def render_shelf(bank: SourceBank, seed: int, cfg: RenderConfig | None = None) -> RenderedShelf:
    cfg = cfg or RenderConfig()
    rng = np.random.default_rng(seed)
    width, height = canvas_size(rng, cfg.long_side)
    canvas = Canvas(width, height)
    fridge = rng.random() < cfg.fridge_share
    fixtures.wall(canvas, bank, rng, dark=fridge and rng.random() < 0.6)
    lo, hi = np.log(cfg.product_px[0]), np.log(cfg.product_px[1])
    typical = float(np.exp(rng.uniform(lo, hi)))
    mix = FRIDGE_MIX if fridge else SHELF_MIX
    y = int(-rng.uniform(0, 0.8) * typical)
    closeup = rng.random() < cfg.closeup_share
    if closeup:
        fill_closeup(canvas, bank, rng, SHELF_MIX, cfg.instore)
        fridge, y = False, height
    while y < height:
        product_h = typical * rng.uniform(0.8, 1.25)
        row_h = int(product_h / rng.uniform(0.7, 0.97))
        board_h = max(2, int(row_h * rng.uniform(0.04, 0.16)))
        floor = y + row_h
        fill_row(canvas, bank, rng, floor, row_h, product_h, mix, cfg.instore, cfg.back_rows, y)
        fixtures.board(canvas, floor, board_h, rng, wire=fridge and rng.random() < 0.5)
        if rng.random() < 0.85:
            rail = max(2, int(board_h * rng.uniform(0.5, 1.6)))
            overlap = int(product_h * rng.uniform(0, 0.08)) if rng.random() < 0.4 else 0
            fixtures.price_rail(canvas, floor - overlap, rail, rng, product_h * rng.uniform(0.6, 2))
        y = floor + board_h
    if cfg.distractors:
        for _ in range(int(rng.integers(0, 3)) // 2):
            fixtures.sign(canvas, rng)
        if fridge:
            for _ in range(int(rng.integers(0, 4))):
                fixtures.ring(canvas, rng, int(typical * rng.uniform(0.1, 0.25)))
        if rng.random() < 0.15:
            fixtures.distractor(canvas, bank, rng, int(typical))
        if not closeup and rng.random() < 0.3:
            fixtures.furniture(canvas, rng)
    scene = "closeup" if closeup else "shelf"
    if fridge and cfg.glass and rng.random() < 0.8:
        fixtures.glass_door(canvas, bank, rng)
        scene = "fridge-glass"
    elif fridge:
        scene = "fridge"
    rgb, owner = canvas.rgb, canvas.owner
    transform = None
    if cfg.perspective > 0 and rng.random() < 0.8:
        transform = random_view(width, height, rng, cfg.perspective)
        rgb, owner = warp(rgb, owner, transform)
    visible = visible_fraction(owner, canvas.full_area, transform)
    shelf_labels = labels(owner, visible, canvas.kinds, cfg.min_visible)
    return RenderedShelf(camera(rgb, rng), shelf_labels, scene)


def visible_fraction(
    owner: np.ndarray, full_area: list[int], transform: np.ndarray | None = None
) -> np.ndarray:
    """Per product id: the share of its pixels still seen in `owner`. After a warp each seen
    pixel stands for `source_pixels_per_output` canvas pixels at that place."""
    ids = owner.ravel()
    counts = np.bincount(ids, minlength=len(full_area)).astype(np.float64)
    if transform is not None and counts[1:].any():
        ys, xs = np.divmod(np.arange(ids.size), owner.shape[1])
        cx = np.bincount(ids, weights=xs, minlength=len(full_area)) / np.maximum(counts, 1)
        cy = np.bincount(ids, weights=ys, minlength=len(full_area)) / np.maximum(counts, 1)
        for i in np.nonzero(counts)[0]:
            counts[i] *= source_pixels_per_output(transform, cx[i], cy[i])
    return counts / np.maximum(np.asarray(full_area, np.float64), 1)
