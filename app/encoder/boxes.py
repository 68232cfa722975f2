"""`boxes` on /classify: regions of the uploaded photo, in its pixel coordinates.

Coordinates refer to the image as decoded (EXIF orientation applied, as every embedding sees
it), `[x0, y0, x1, y1]` with x0 < x1 <= width and y0 < y1 <= height; fractional values are
widened to whole pixels (floor of the start, ceiling of the end).
"""

from __future__ import annotations

import math
from typing import Any

from app.strict_json import JsonRefused, loads_strict

Box = tuple[float, float, float, float]


class BoxError(ValueError):
    """Refused boxes: always a 422."""


def parse_boxes(raw: str, limit: int) -> list[Box]:
    shape = "boxes must be a JSON list of [x0, y0, x1, y1] lists"
    try:
        value: Any = loads_strict(raw)
    except JsonRefused as exc:
        raise BoxError(exc.worded("boxes", shape)) from exc
    if not isinstance(value, list) or not value:
        raise BoxError(shape)
    if len(value) > limit:
        raise BoxError(f"boxes: at most {limit} boxes per request")
    boxes = []
    for i, box in enumerate(value):
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
        ):
            raise BoxError(f"boxes[{i}]: must be [x0, y0, x1, y1], four numbers")
        # Finite, and integers within 64 bits: loads_strict holds every number to that.
        x0, y0, x1, y1 = (float(v) for v in box)
        if x0 < 0 or y0 < 0 or x0 >= x1 or y0 >= y1:
            raise BoxError(f"boxes[{i}]: need 0 <= x0 < x1 and 0 <= y0 < y1")
        boxes.append((x0, y0, x1, y1))
    return boxes


def pixel_boxes(boxes: list[Box], width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Whole-pixel crop rectangles; a box reaching past the image is refused, not clipped."""
    out = []
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if x1 > width or y1 > height:
            raise BoxError(f"boxes[{i}]: outside the image ({width}x{height})")
        out.append((math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)))
    return out
