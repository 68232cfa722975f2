"""The canvas a shelf is painted on, and its occlusion bookkeeping.

Beside the colour image the canvas keeps an owner map: for each pixel, the product whose
opaque pixels (coverage above one half) were painted there last, or 0 (shelf, glass frame,
price strip, any other occluder). A product's box is then the extent of the pixels it still
owns after everything was painted and warped, and its visible fraction is what it owns against
what it would cover alone (also counting what falls outside the canvas).

Rule, applied once at the end (`labels`): visible >= `min_visible` (1/2) -> a box (its visible
extent); visible >= `min_ignore` (3/10) -> an ignore region (neither product nor background in
training, never counted in evaluation on rendered shelves); less -> background, like the tops
of the bottles behind the front row, which shelf annotations do not box either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from training.shelves.sources import Sprite

MIN_VISIBLE = 0.5
MIN_IGNORE = 0.3


@dataclass
class ShelfLabels:
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 (pixel edges, x2/y2 exclusive)
    ignore: np.ndarray  # (M, 4) float32
    kinds: list[str]  # per box


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.owner = np.zeros((height, width), np.int32)
        self.full_area: list[int] = [0]  # index = product id; id 0 is "not a product"
        self.kinds: list[str] = [""]

    def fill(self, rgb: np.ndarray) -> None:
        self.rgb[:] = rgb

    def paste(
        self,
        sprite: Sprite,
        x: int,
        y: int,
        kind: str | None,
        opacity: float = 1.0,
        brightness: float = 1.0,
    ) -> int:
        """Alpha-composite `sprite` with its top-left corner at (x, y).

        `kind` None paints an occluder (it takes ownership of the pixels it covers, for id 0);
        otherwise a new product id is returned."""
        h, w = sprite.alpha.shape
        alpha = sprite.alpha * opacity
        pid = 0
        if kind is not None:
            pid = len(self.full_area)
            self.full_area.append(int((alpha > 0.5).sum()))
            self.kinds.append(kind)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x1 <= x0 or y1 <= y0:
            return pid
        a = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
        src = sprite.rgb[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32) * brightness
        dst = self.rgb[y0:y1, x0:x1]
        dst += (src - dst) * a[..., None]
        self.owner[y0:y1, x0:x1][a > 0.5] = pid
        return pid

    def paint(self, region: tuple[int, int, int, int], rgb: np.ndarray, alpha: np.ndarray) -> None:
        """Blend a layer that is not a product (glass, glare, shadow) over `region`
        (x0, y0, x1, y1); it occludes where it is nearly opaque."""
        x0, y0, x1, y1 = region
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
        if x1 <= x0 or y1 <= y0:
            return
        dx, dy = x0 - region[0], y0 - region[1]
        a = alpha[dy : dy + y1 - y0, dx : dx + x1 - x0]
        c = rgb[dy : dy + y1 - y0, dx : dx + x1 - x0] if rgb.ndim == 3 else rgb
        dst = self.rgb[y0:y1, x0:x1]
        dst += (np.asarray(c, np.float32) - dst) * a[..., None]
        self.owner[y0:y1, x0:x1][a > 0.9] = 0


def labels(
    owner: np.ndarray,
    visible: np.ndarray,
    kinds: list[str],
    min_visible: float = MIN_VISIBLE,
    min_side: int = 4,
    min_ignore: float = MIN_IGNORE,
) -> ShelfLabels:
    """Boxes and ignore regions from an owner map (after any warp of it) and each product's
    visible fraction."""
    boxes, ignore, box_kinds = [], [], []
    for pid, found in enumerate(ndimage.find_objects(owner), start=1):
        if found is None:
            continue
        ys, xs = found
        box = (xs.start, ys.start, xs.stop, ys.stop)
        small = min(box[2] - box[0], box[3] - box[1]) < min_side
        if visible[pid] >= min_visible and not small:
            boxes.append(box)
            box_kinds.append(kinds[pid])
        elif visible[pid] >= min_ignore or small:
            ignore.append(box)
    return ShelfLabels(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(ignore, np.float32).reshape(-1, 4),
        box_kinds,
    )
