"""The grey-level views of a photo that the reader hands to zxing-cpp, likeliest per ms first.

A linear code is read along straight scan lines (zxing-cpp scans rows, and columns with
`try_rotate`); a line crosses every bar only while the code is within about 30 degrees of
the scan direction (less for short bars), so two views whose rows are the photo's 45 and
135 degree lines (`diagonal_lines`) cover the angles in between. zxing-cpp's default
binarizer (a local average) thins or drops bars of 1-2 px that a fixed threshold keeps, so
the upright view is also read that way, which costs little.
Each view carries its points back to the photo's pixels (`Affine`), so every box the reader
reports is in the photo's coordinates.

The order (`plan`):

1. `work`: the photo box-reduced by an integer factor to about `work_side` pixels on its
   long side (a code on a handheld photo is large; its modules stay >= 1 px there), read
   with the local-average binarizer, then with a fixed threshold;
2. `work`'s 45 and 135 degree lines, as the rows of two views;
3. `work` shifted by half a pixel: bars of about 2 px whose edges fall mid-pixel come out
   grey on both sides, and thresholding then widens or thins them all; half a pixel on,
   the edges fall between pixels (on 330 of the bench's photos this read as many codes as
   upscaling by 1.5, for a third of the cost);
4. a photo that was reduced: full-resolution tiles, centre first, overlapping by
   `TILE_OVERLAP` so a small code lies whole in one of them, upright and then diagonally.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Literal, get_args

import numpy as np
from PIL import Image

# (a, b, c, d, e, f): view (x, y) -> photo (a*x + b*y + c, d*x + e*y + f), as Pillow's AFFINE.
Affine = tuple[float, float, float, float, float, float]
IDENTITY: Affine = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

# Overlap of full-resolution tiles: a code that the reduced view missed has modules under
# about 1.2 px there, so at most ~3.5 px at full size on a 12 MP photo; 95 modules plus
# quiet zones is then about 400 px.
TILE_OVERLAP = 400
# Background of a diagonal view's empty corners: white, like a label's quiet zone.
FILL = 255

# How a view is made and read; the reader keeps a cost per pixel for each.
Kind = Literal["upright", "threshold", "diagonal", "shifted"]
KINDS: tuple[Kind, ...] = get_args(Kind)


@dataclass(frozen=True)
class View:
    pixels: np.ndarray  # uint8 (H, W), maybe a strided view of the photo's grey pixels
    to_photo: Affine
    fixed_threshold: bool = False
    try_rotate: bool = True  # also read its columns


@dataclass(frozen=True)
class Step:
    """A view not made yet: its kind, the pixels it starts from (what its cost is estimated
    from), and how to make it."""

    kind: Kind
    pixels: int
    make: Callable[[], View]


def apply(affine: Affine, x: float, y: float) -> tuple[float, float]:
    a, b, c, d, e, f = affine
    return a * x + b * y + c, d * x + e * y + f


def compose(outer: Affine, inner: Affine) -> Affine:
    """The affine doing `inner` first, then `outer`."""
    a, b, c, d, e, f = outer
    p, q, r, s, t, u = inner
    return (
        a * p + b * s,
        a * q + b * t,
        a * r + b * u + c,
        d * p + e * s,
        d * q + e * t,
        d * r + e * u + f,
    )


def diagonal_lines(pixels: np.ndarray, slope: int) -> tuple[np.ndarray, Affine]:
    """An image whose rows are the 45 degree lines of `pixels` (slope +1: running up to the
    right; -1: down to the right), and the affine back (to within a pixel).

    Column x is moved down by x rows (or up), so each row of the sheared image is one line of
    pixels, sampled exactly; along such a line the pixel centres are 1.41 px apart, too
    coarse for bars of 2 px, so each output row interleaves two neighbouring lines (0.71 px
    apart across the line, their samples 0.71 px apart along it). On 15 of the bench's photos
    of 2 px bars at 45 degrees this read all 15, a nearest-neighbour turn 7 and a bilinear
    turn, at twice the cost, 12.
    """
    h, w = pixels.shape
    sheared = np.full((h + w - 1, w), FILL, np.uint8)
    if slope > 0:  # sheared[y + x, x] = pixels[y, x]
        target = np.lib.stride_tricks.as_strided(sheared, shape=(h, w), strides=(w, w + 1))
    else:  # sheared[y - x + w - 1, x] = pixels[y, x]
        target = np.lib.stride_tricks.as_strided(sheared[w - 1 :], shape=(h, w), strides=(w, 1 - w))
    target[...] = pixels
    rows = (sheared.shape[0] - 1) // 2
    even, odd = sheared[0 : 2 * rows : 2], sheared[1 : 2 * rows + 1 : 2]
    out = np.empty((rows, 2 * w), np.uint8)
    # Along a line of slope +1 the next line's samples come first, along -1 this line's.
    first, second = (odd, even) if slope > 0 else (even, odd)
    out[:, 0::2], out[:, 1::2] = first, second
    # out (u, r) -> sheared (u / 2, 2 r + 1/2) -> pixels (x, y + x or y - x + w - 1 undone)
    if slope > 0:
        return out, (0.5, 0.0, 0.0, -0.5, 2.0, 0.5)
    return out, (0.5, 0.0, 0.0, 0.5, 2.0, 0.5 - (w - 1))


def reduction(width: int, height: int, work_side: int) -> int:
    """The integer factor that brings the long side nearest `work_side` (a box reduction by an
    integer costs a fraction of resampling to an exact size): 2/3 to 3/2 of it."""
    return max(1, round(max(width, height) / work_side))


def tiles(width: int, height: int, side: int) -> list[tuple[int, int, int, int]]:
    """Boxes of about `side` px covering the photo with `TILE_OVERLAP`, nearest the centre first."""

    def spans(length: int) -> list[tuple[int, int]]:
        if length <= side:
            return [(0, length)]
        n = math.ceil((length - TILE_OVERLAP) / (side - TILE_OVERLAP))
        size = math.ceil((length + (n - 1) * TILE_OVERLAP) / n)
        step = (length - size) / (n - 1)
        return [(round(i * step), round(i * step) + size) for i in range(n)]

    boxes = [(x0, y0, x1, y1) for y0, y1 in spans(height) for x0, x1 in spans(width)]
    cx, cy = width / 2, height / 2
    return sorted(boxes, key=lambda b: math.hypot((b[0] + b[2]) / 2 - cx, (b[1] + b[3]) / 2 - cy))


def _diagonal(view: View, slope: int) -> View:
    pixels, back = diagonal_lines(view.pixels, slope)
    # Its columns are the photo's columns again: nothing to gain from reading them.
    return View(pixels, compose(view.to_photo, back), try_rotate=False)


def _shifted(view: View) -> View:
    """The view resampled half a pixel down and right (2x2 means): a bar edge that fell in
    the middle of a pixel now falls between two."""
    p = view.pixels.astype(np.uint16)
    avg = ((p[:-1, :-1] + p[1:, :-1] + p[:-1, 1:] + p[1:, 1:] + 2) >> 2).astype(np.uint8)
    return View(avg, compose(view.to_photo, (1.0, 0.0, 0.5, 0.0, 1.0, 0.5)))


def _same(view: View) -> View:
    return view


def _threshold(view: View) -> View:
    return View(view.pixels, view.to_photo, fixed_threshold=True)


def plan(grey: np.ndarray, work_side: int) -> Iterator[Step]:
    """The steps for one photo's grey pixels, in the order they are worth trying."""
    height, width = grey.shape
    k = reduction(width, height, work_side)
    # Made before the first step is handed out, so the reduction (once per photo) does not
    # count as the upright read's cost per pixel, from which the other steps are estimated.
    if k == 1:
        work = View(grey, IDENTITY)
    else:
        small = np.asarray(Image.fromarray(grey).reduce(k))
        work = View(small, (width / small.shape[1], 0.0, 0.0, 0.0, height / small.shape[0], 0.0))

    work_pixels = work.pixels.size
    yield Step("upright", work_pixels, partial(_same, work))
    yield Step("threshold", work_pixels, partial(_threshold, work))
    yield Step("diagonal", work_pixels, partial(_diagonal, work, 1))
    yield Step("diagonal", work_pixels, partial(_diagonal, work, -1))
    yield Step("shifted", work_pixels, partial(_shifted, work))
    if k == 1:
        return

    boxes = tiles(width, height, work_side)
    for box in boxes:
        yield Step("upright", _area(box), partial(_tile, grey, box))
    for box in boxes:
        for slope in (1, -1):
            yield Step("diagonal", _area(box), partial(_diagonal_tile, grey, box, slope))


def _area(box: tuple[int, int, int, int]) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _tile(grey: np.ndarray, box: tuple[int, int, int, int]) -> View:
    x0, y0, x1, y1 = box
    return View(grey[y0:y1, x0:x1], (1.0, 0.0, float(x0), 0.0, 1.0, float(y0)))


def _diagonal_tile(grey: np.ndarray, box: tuple[int, int, int, int], slope: int) -> View:
    return _diagonal(_tile(grey, box), slope)
