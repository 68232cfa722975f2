"""Real product photos with real barcodes on them: a code drawn by zxing-cpp on a white label,
pasted where a tester wants it (tests of what the service does with the codes it reads)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import zxingcpp
from PIL import Image

FORMATS = {
    "ean13": zxingcpp.BarcodeFormat.EAN13,
    "ean8": zxingcpp.BarcodeFormat.EAN8,
    "upca": zxingcpp.BarcodeFormat.UPCA,
}


def photo_with_code(
    source: Path | bytes,
    digits: str,
    fmt: str = "ean13",
    long_side: int = 1000,
    at: tuple[int, int] | None = None,
    module: int = 3,
    quality: int = 92,
) -> tuple[bytes, tuple[int, int, int, int]]:
    """The photo at `source` (or in its bytes), its long side `long_side`, with `digits`
    printed on a label at `at` (default: the lower right corner), as JPEG bytes at `quality`;
    and the label's box in its pixels."""
    with Image.open(source if isinstance(source, Path) else io.BytesIO(source)) as opened:
        image = opened.convert("RGB")
    scale = long_side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)))
    drawn = Image.fromarray(
        np.asarray(zxingcpp.create_barcode(digits, FORMATS[fmt]).to_image(scale=module))
    )
    drawn = drawn.resize((drawn.width, 40 * module), Image.Resampling.NEAREST)
    label = Image.new("RGB", (drawn.width + 8 * module, drawn.height + 8 * module), "white")
    label.paste(drawn.convert("RGB"), (4 * module, 4 * module))
    x, y = (
        at if at is not None else (image.width - label.width - 8, image.height - label.height - 8)
    )
    image.paste(label, (x, y))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue(), (x, y, x + label.width, y + label.height)


def photo_bytes(path: Path, long_side: int = 1000) -> bytes:
    """The photo at `path` as `photo_with_code` sizes it, without a code."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    scale = long_side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()
