"""What zxing-cpp found -> a `ReadCode`, or nothing when the read does not hold up.

Retail codes are re-checked here rather than trusted: the digits must be a GTIN of the
format's length with a valid check digit, and a UPC-E must expand (`gtin.upce_to_upca`) to
the same UPC-A zxing-cpp expanded it to. zxing-cpp reports a UPC-A as an EAN-13 with a
leading zero when both are asked for (the bars are the same), so that case is named UPC-A
with its 12 printed digits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import zxingcpp

from app.barcodes.formats import CodeFormat
from app.barcodes.gtin import GtinError, normalise_gtin, upce_to_upca, validate_gtin
from app.barcodes.views import Affine, apply

Box = tuple[int, int, int, int]

# Digits each retail format prints (the check digit included).
RETAIL_LENGTH = {CodeFormat.EAN13: 13, CodeFormat.UPCA: 12, CodeFormat.EAN8: 8, CodeFormat.UPCE: 8}
# A GS1 element string's GTIN (application identifier 01), as zxing-cpp's HRI text shows it.
GS1_GTIN = re.compile(r"^\(01\)(\d{14})")

_FROM_ZXING = {
    zxingcpp.BarcodeFormat.EAN13: CodeFormat.EAN13,
    zxingcpp.BarcodeFormat.EAN8: CodeFormat.EAN8,
    zxingcpp.BarcodeFormat.UPCA: CodeFormat.UPCA,
    zxingcpp.BarcodeFormat.UPCE: CodeFormat.UPCE,
    zxingcpp.BarcodeFormat.Code128: CodeFormat.CODE128,
    zxingcpp.BarcodeFormat.QRCode: CodeFormat.QR,
    zxingcpp.BarcodeFormat.DataMatrix: CodeFormat.DATAMATRIX,
}


@dataclass(frozen=True)
class ReadCode:
    """One code read from a photo.

    `text`: what the code says (for retail codes the digits as printed: 13 for EAN-13, 12 for
    UPC-A, 8 for EAN-8 and UPC-E); `box`: (x0, y0, x1, y1) in the pixels of the image given to
    the reader; `gtin`: the normalised GTIN-14 when the code carries one, else None.
    """

    text: str
    format: CodeFormat
    box: Box
    gtin: str | None


def _format(barcode: zxingcpp.Barcode, wanted: frozenset[CodeFormat]) -> CodeFormat | None:
    found = _FROM_ZXING.get(barcode.format)
    if found is None:
        # A sub-format (QR Code Model 2, ...) of one we asked for.
        found = _FROM_ZXING.get(barcode.symbology)
    if found is CodeFormat.EAN13 and barcode.text.startswith("0") and CodeFormat.UPCA in wanted:
        return CodeFormat.UPCA
    return found


def _retail(barcode: zxingcpp.Barcode, fmt: CodeFormat) -> tuple[str, str] | None:
    """(printed digits, GTIN-14), or None when they do not hold up."""
    text = barcode.text
    try:
        if fmt is CodeFormat.UPCE:
            extra = barcode.extra
            printed = extra.get("UPCE") if isinstance(extra, dict) else None
            if not isinstance(printed, str) or upce_to_upca(printed) != text[-12:]:
                return None
            return printed, normalise_gtin(text)
        if fmt is CodeFormat.UPCA and len(text) == 13 and text.startswith("0"):
            text = text[1:]
        if len(text) != RETAIL_LENGTH[fmt]:
            return None
        validate_gtin(text)
        return text, normalise_gtin(text)
    except GtinError:
        return None


def _gs1_gtin(barcode: zxingcpp.Barcode) -> str | None:
    if barcode.content_type != zxingcpp.ContentType.GS1:
        return None
    match = GS1_GTIN.match(barcode.text)
    if match is None:
        return None
    try:
        return normalise_gtin(match.group(1))
    except GtinError:
        return None


def photo_box(barcode: zxingcpp.Barcode, to_photo: Affine, size: tuple[int, int]) -> Box:
    """The code's quadrilateral carried to the photo, as an axis-aligned box inside it."""
    pos = barcode.position
    corners = [pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left]
    points = [apply(to_photo, p.x, p.y) for p in corners]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    width, height = size
    x0 = min(max(math.floor(min(xs)), 0), width - 1)
    y0 = min(max(math.floor(min(ys)), 0), height - 1)
    return (
        x0,
        y0,
        max(min(math.ceil(max(xs)) + 1, width), x0 + 1),
        max(min(math.ceil(max(ys)) + 1, height), y0 + 1),
    )


def to_code(
    barcode: zxingcpp.Barcode,
    wanted: frozenset[CodeFormat],
    to_photo: Affine,
    size: tuple[int, int],
) -> ReadCode | None:
    if not barcode.valid:
        return None
    fmt = _format(barcode, wanted)
    if fmt is None or fmt not in wanted:
        return None
    box = photo_box(barcode, to_photo, size)
    if fmt in RETAIL_LENGTH:
        checked = _retail(barcode, fmt)
        if checked is None:
            return None
        return ReadCode(checked[0], fmt, box, checked[1])
    return ReadCode(barcode.text, fmt, box, _gs1_gtin(barcode))
