"""Regions of a photo (`boxes`): their type, and cutting them out at the scale they need.

A box is `(x0, y0, x1, y1)` in the pixels of the upright photo at full size (EXIF orientation
applied, as every embedding sees it), with x0 < x1 <= width and y0 < y1 <= height; fractional
values are widened to whole pixels (floor of the start, ceiling of the end). The photo is
decoded at the scale where the smallest box still covers the model's input, so a 12 MP shelf
photo with large facings is never decoded whole.
"""

from __future__ import annotations

import math

import numpy as np

from app.encoder.decode import DecodedPhoto
from app.encoder.preprocess import reduction_for
from app.runtime.inference import Inference

Box = tuple[float, float, float, float]
PixelBox = tuple[int, int, int, int]


class BoxOutside(ValueError):
    """Box `index` reaches past the photo (`width` x `height`): refused, not clipped."""

    def __init__(self, index: int, width: int, height: int) -> None:
        super().__init__(index, width, height)
        self.index = index
        self.width = width
        self.height = height


def pixel_boxes(boxes: list[Box], width: int, height: int) -> list[PixelBox]:
    """Whole-pixel crop rectangles; raises BoxOutside for a box reaching past the photo."""
    out = []
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if x1 > width or y1 > height:
            raise BoxOutside(i, width, height)
        out.append((math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)))
    return out


def region_pixels(inference: Inference, photo: bytes, boxes: list[Box]) -> list[np.ndarray]:
    """Blocking (the decode pool): the model's pixels of each box of the photo, in order;
    raises ImageDecodeError for the photo, BoxOutside for a box."""
    sizes = [(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes]
    cfg = inference.encoder.preprocess
    decoded = inference.photo(photo, lambda w, h: reduction_for(cfg, sizes))
    return crops_pixels(inference, decoded, boxes)


def crops_pixels(inference: Inference, decoded: DecodedPhoto, boxes: list[Box]) -> list[np.ndarray]:
    """Each box of a decoded photo as the model's pixels. The photo was decoded at the scale of
    its smallest box; a larger box is first reduced (by 2, 4 or 8: a box filter, as the JPEG
    decoder's own scaling) to the scale where it still covers the model's input, so a shelf's
    big facings cost no more to resample than its small ones."""
    cfg = inference.encoder.preprocess
    pixels = []
    for rect in pixel_boxes(boxes, decoded.width, decoded.height):
        crop = decoded.region(rect)
        factor = reduction_for(cfg, [crop.size])
        pixels.append(inference.pixels(crop.reduce(factor) if factor > 1 else crop))
    return pixels
