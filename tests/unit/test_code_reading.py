"""Reading an upload's barcodes beside its classification (app/runtime/code_reading.py): the
photo decoded again at the reader's scale, boxes in the full-size photo's pixels."""

from __future__ import annotations

import asyncio

from app.barcodes.reader import BarcodeReader
from app.encoder.decode import DecodeBudget
from app.runtime.code_reading import MAX_TEXT, CodeReading, printable
from tests.image_factory import png_bomb
from tests.support.barcode_photos import photo_with_code
from tests.support.paths import GROCERY

MILK = GROCERY / "test/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_005.jpg"
CODE = "4006381333931"


def reading(read_side: int = 2000) -> CodeReading:
    # What is read, not how fast: a budget no busy machine exhausts.
    return CodeReading(BarcodeReader(budget_ms=5000), 40_000_000, DecodeBudget(10**8), read_side)


def test_a_large_photo_is_read_reduced_and_boxed_at_full_size() -> None:
    # 4000 px long side, read at half size: the label's box comes back in full-size pixels.
    data, label = photo_with_code(MILK, CODE, long_side=4000, module=6)
    codes = reading().read(data)
    assert [(c.text, c.format, c.gtin) for c in codes] == [(CODE, "ean13", "0" + CODE)]
    x0, y0, x1, y1 = codes[0].box
    assert label[0] <= x0 < x1 <= label[2] and label[1] <= y0 < y1 <= label[3]
    assert (x1 - x0) > 0.8 * (label[2] - label[0] - 48)  # not half the size


def test_undecodable_uploads_read_as_no_codes() -> None:
    codes = reading()
    assert codes.read(b"not an image") == []
    assert codes.read(png_bomb()) == []  # refused from its header, never decoded


def test_started_on_the_loop_read_on_the_pool() -> None:
    data, _ = photo_with_code(MILK, CODE)
    codes = reading()

    async def both() -> list[str]:
        task = codes.start(data)
        return [c.text for c in await task]

    try:
        assert asyncio.run(both()) == [CODE]
    finally:
        codes.close()


def test_printable_text_only() -> None:
    assert printable("ab\x00c") == "abc"
    assert printable("a\ud800b") == "a?b"  # a lone surrogate is not Unicode text
    assert len(printable("x" * 5000)) == MAX_TEXT
