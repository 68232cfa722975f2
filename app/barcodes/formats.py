"""The symbologies the reader knows, by the names the service uses for them.

The names are ours, not zxing-cpp's (it renamed and regrouped formats between versions), so
settings and answers do not change with the library.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import zxingcpp


class CodeFormat(StrEnum):
    EAN13 = "ean13"
    EAN8 = "ean8"
    UPCA = "upca"
    UPCE = "upce"
    CODE128 = "code128"
    QR = "qrcode"
    DATAMATRIX = "datamatrix"


# The codes printed on retail packaging at the point of sale; each carries a GTIN.
RETAIL = frozenset({CodeFormat.EAN13, CodeFormat.EAN8, CodeFormat.UPCA, CodeFormat.UPCE})
DEFAULT_FORMATS = RETAIL
# Codes of parallel bars (what the reader's gate looks for); QR codes and DataMatrix are not.
LINEAR = RETAIL | {CodeFormat.CODE128}
# The retail codes short enough to be read off a piece of a longer one: a scan line that
# crosses only the left half of a tilted EAN-13 sees a valid UPC-E (guards, parity, check
# digit and all), and one across its middle can look like an EAN-8.
SHORT = frozenset({CodeFormat.EAN8, CodeFormat.UPCE})

ZXING: dict[CodeFormat, zxingcpp.BarcodeFormat] = {
    CodeFormat.EAN13: zxingcpp.BarcodeFormat.EAN13,
    CodeFormat.EAN8: zxingcpp.BarcodeFormat.EAN8,
    CodeFormat.UPCA: zxingcpp.BarcodeFormat.UPCA,
    CodeFormat.UPCE: zxingcpp.BarcodeFormat.UPCE,
    CodeFormat.CODE128: zxingcpp.BarcodeFormat.Code128,
    CodeFormat.QR: zxingcpp.BarcodeFormat.QRCode,
    CodeFormat.DATAMATRIX: zxingcpp.BarcodeFormat.DataMatrix,
}


def parse_formats(text: str) -> frozenset[CodeFormat]:
    """`"ean13, upca"` -> the formats; raises ValueError naming the first unknown name."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    known = [f.value for f in CodeFormat]
    for name in names:
        if name not in known:
            raise ValueError(f"unknown barcode format {name!r}; known: {', '.join(known)}")
    return frozenset(CodeFormat(name) for name in names)


def zxing_formats(formats: Iterable[CodeFormat]) -> zxingcpp.BarcodeFormats:
    return zxingcpp.BarcodeFormats([ZXING[f] for f in sorted(formats)])
