"""A retail code counts only when a second, independent look at it reads the same digits.

Two ways a linear code is misread, both seen in the bench, both with valid check digits:

- **sampling**: at about 2 px per module, a bar that straddles pixels is grey at both edges,
  and thresholding can widen or thin every bar alike; the widths then spell another valid
  code (an EAN-13 read as some UPC-A);
- **pieces**: a scan line that crosses a tilted EAN-13 only partly (it leaves through the
  top of the bars) sees its left half and centre guard as a complete UPC-E, quiet zone and
  check digit included; one across its middle can look like an EAN-8.

So each retail code is read again from a window of the photo around it, turned so that its
bars stand upright (their direction from the structure tensor of the gradients there) and
resampled to about `MODULE_PX` pixels per module, never at the first read's scale: every scan
line then crosses the whole symbol, and the pixels are a different sampling of it. The code
stays only if such a read finds the same digits at the same place (`LONG_LOOKS`,
`SHORT_LOOKS`: which binarizers and scales, and why). A short code (EAN-8, UPC-E) whose
centre lies inside an accepted EAN-13 or UPC-A is dropped without a second look. Only photos
that produced a code pay for this: a window of a few hundred pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import zxingcpp
from PIL import Image

from app.barcodes.formats import RETAIL, SHORT, CodeFormat, zxing_formats
from app.barcodes.symbols import ReadCode, to_code
from app.barcodes.views import Affine, compose

# Modules across each retail symbol (guards included, quiet zones not).
MODULES = {CodeFormat.EAN13: 95, CodeFormat.UPCA: 95, CodeFormat.EAN8: 67, CodeFormat.UPCE: 51}
# How far the second look reaches along the bar normal, each side of the code's centre, in
# box lengths (by "is short"): a UPC-E read off an EAN-13 is about half of it, its centre a
# quarter from one end, so the far end is ~1.5 lengths away, its quiet zone further.
REACH = {False: 0.8, True: 2.0}
# And along the bars: bars are 0.6-0.8 symbol lengths tall; the window spans them all, so the
# confirming read's box covers the whole code.
ACROSS = 0.5
# Pixels per module a second look reads at (the box's long side stands in for the symbol's
# length); never within MIN_RESCALE of the photo's scale, never above MAX_SCALE.
MODULE_PX = 4.5
MIN_RESCALE = 0.2
MAX_SCALE = 3.0
SECOND_SCALE = 2.0  # a short code's second try
# Crops are never read larger than this (px, long side).
CROP_SIDE = 1600
# Below this coherence the pixels have no single bar direction (not a barcode).
MIN_COHERENCE = 0.3

_RETAIL_ZXING = zxing_formats(RETAIL)


def centre_inside(code: ReadCode, other: ReadCode) -> bool:
    cx, cy = (code.box[0] + code.box[2]) / 2, (code.box[1] + code.box[3]) / 2
    x0, y0, x1, y1 = other.box
    return x0 <= cx <= x1 and y0 <= cy <= y1


def overlap(a: ReadCode, b: ReadCode) -> bool:
    return (
        a.box[0] < b.box[2] and b.box[0] < a.box[2] and a.box[1] < b.box[3] and b.box[1] < a.box[3]
    )


def piece_of_long(code: ReadCode, accepted: list[ReadCode]) -> bool:
    return code.format in SHORT and any(
        o.format in RETAIL and o.format not in SHORT and centre_inside(code, o) for o in accepted
    )


def bar_normal_degrees(pixels: np.ndarray) -> float | None:
    """The direction across the bars, in degrees from the x axis (y down), or None when the
    pixels have no dominant direction."""
    grey = pixels.astype(np.float32)
    gx = grey[1:-1, 2:] - grey[1:-1, :-2]
    gy = grey[2:, 1:-1] - grey[:-2, 1:-1]
    jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    trace = jxx + jyy
    if trace <= 0 or math.hypot(jxx - jyy, 2 * jxy) / trace < MIN_COHERENCE:
        return None
    return math.degrees(0.5 * math.atan2(2 * jxy, jxx - jyy))


def _scale(code: ReadCode, length: float) -> float:
    """Output px per photo px for the second look: ~MODULE_PX per module, but never ~1."""
    module = length / MODULES[code.format]
    scale = min(MAX_SCALE, MODULE_PX / max(module, 0.1))
    if abs(scale - 1) < MIN_RESCALE:
        scale = 1 + MIN_RESCALE if scale >= 1 else 1 - MIN_RESCALE
    return scale


def window(
    grey: np.ndarray,
    centre: tuple[float, float],
    normal: float,
    half: tuple[float, float],
    scale: float,
) -> tuple[np.ndarray, Affine]:
    """A window of the photo turned so that `normal` lies along x, `half` (along, across the
    normal) photo px each side of `centre`, sampled at `scale` output px per photo px; and
    its affine to the photo. Sampled from the photo itself, not from a crop: the cut edge
    of a crop, turned, is a white margin where a scan line could end inside a symbol."""
    height, width = grey.shape
    rad = math.radians(normal)
    cos, sin = math.cos(rad), math.sin(rad)
    out_w, out_h = max(8, math.ceil(2 * half[0] * scale)), max(8, math.ceil(2 * half[1] * scale))
    mx, my = centre
    # output (u, v) -> photo: centre + R(normal) . ((u - out_w/2) / scale, (v - out_h/2) / scale)
    a, b, d, e = cos / scale, -sin / scale, sin / scale, cos / scale
    to_photo: Affine = (
        a,
        b,
        mx - a * out_w / 2 - b * out_h / 2,
        d,
        e,
        my - d * out_w / 2 - e * out_h / 2,
    )
    reach = math.hypot(*half) + 2
    x0, y0 = max(0, math.floor(mx - reach)), max(0, math.floor(my - reach))
    x1, y1 = min(width, math.ceil(mx + reach)), min(height, math.ceil(my + reach))
    source = Image.fromarray(np.ascontiguousarray(grey[y0:y1, x0:x1]))
    k = max(1, math.floor(1 / scale))  # a box reduction first, so downsampling does not alias
    if k > 1:
        source = source.reduce(k)
    to_source = compose((1 / k, 0.0, -x0 / k, 0.0, 1 / k, -y0 / k), to_photo)
    pixels = source.transform(
        (out_w, out_h),
        Image.Transform.AFFINE,
        to_source,
        resample=Image.Resampling.BICUBIC,
        fillcolor=255,
    )
    return np.asarray(pixels), to_photo


@dataclass(frozen=True)
class Look:
    """One second look: the scale (None: ~MODULE_PX per module) and the binarizer."""

    scale: float | None
    binarizer: zxingcpp.Binarizer


FIXED, LOCAL = zxingcpp.Binarizer.FixedThreshold, zxingcpp.Binarizer.LocalAverage
# Tried in turn until one agrees (measured on the bench's first reads, right and wrong: see
# docs/BARCODES.md). A fixed threshold on the upright window confirms nearly every right read
# of an EAN-13 or UPC-A, blurred ones included, and no wrong one; on a UPC-E piece of an EAN-13
# in perspective it agreed once, so short codes get the local-average binarizer only, at two
# scales. Never the photo's own scale: that repeats a sampling misread instead of testing it.
LONG_LOOKS = (Look(None, FIXED), Look(None, LOCAL))
SHORT_LOOKS = (Look(None, LOCAL), Look(SECOND_SCALE, LOCAL))


def second_look(
    grey: np.ndarray, code: ReadCode, probe: frozenset[CodeFormat], looks: tuple[Look, ...]
) -> Iterator[list[ReadCode]]:
    """For each look, the retail codes read on an upright, resampled window around `code`
    (named as `probe` names them: see `to_code`); nothing when the code's pixels have no
    single bar direction."""
    x0, y0, x1, y1 = code.box
    # The bar direction, measured on a square at the code's centre (inside the bars, away
    # from their ends, even when the box is a thin strip along a few scan lines).
    half = max(2, max(x1 - x0, y1 - y0) // 4)
    mx, my = (x0 + x1) // 2, (y0 + y1) // 2
    normal = bar_normal_degrees(grey[max(0, my - half) : my + half, max(0, mx - half) : mx + half])
    if normal is None:
        return
    # The symbol's length: the box's extent across the bars. A box around a few scan lines
    # that crossed the code at an angle has about that extent; a box around the whole code
    # overstates it by up to its bar height (a wider window, a coarser sampling: both fine).
    rad = math.radians(normal)
    length = abs((x1 - x0) * math.cos(rad)) + abs((y1 - y0) * math.sin(rad))
    along = REACH[code.format in SHORT] * length
    size = (grey.shape[1], grey.shape[0])
    done: list[tuple[float, zxingcpp.Binarizer]] = []
    for look in looks:
        scale = look.scale or _scale(code, length)
        if any(b == look.binarizer and abs(scale / s - 1) < MIN_RESCALE for s, b in done):
            continue  # about the same look again
        done.append((scale, look.binarizer))
        pixels, to_photo = window(
            grey,
            ((x0 + x1) / 2, (y0 + y1) / 2),
            normal,
            (along, ACROSS * length),
            min(scale, CROP_SIDE / (2 * along)),
        )
        barcodes = zxingcpp.read_barcodes(
            pixels,
            formats=_RETAIL_ZXING,
            try_rotate=False,
            try_downscale=False,
            try_invert=False,
            binarizer=look.binarizer,
        )
        yield [c for b in barcodes if (c := to_code(b, probe, to_photo, size))]


def confirmed(grey: np.ndarray, code: ReadCode, wanted: frozenset[CodeFormat]) -> ReadCode | None:
    """The second look's read of `code` (same digits, same place), or None. Its box is the
    better one: upright, the scan lines span the whole height of the bars, where the first
    read's lines may have crossed a tilted code only in a thin strip."""
    # Name long codes as the first reads do (a UPC-A is an EAN-13 unless UPC-A is wanted).
    probe = wanted | {CodeFormat.EAN13}
    if CodeFormat.EAN13 not in wanted:
        probe |= {CodeFormat.UPCA}
    looks = SHORT_LOOKS if code.format in SHORT else LONG_LOOKS
    for found in second_look(grey, code, probe, looks):
        for again in found:
            if again.format == code.format and again.text == code.text and overlap(again, code):
                return again
    return None
