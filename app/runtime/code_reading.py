"""Reading the barcodes of uploaded photos, beside their classification.

A barcode needs far more pixels than the model's 224: the photo is decoded again at the scale
the reader works at (its long side at least `read_side`; grey: a JPEG's luma alone, which is
all the reader looks at and half the decode of RGB), within the process's decode budget,
and read on a pool of its own within the reader's time budget (app/barcodes/reader.py). Started
when a classification starts, so the two run side by side: a photo without a code waits only
for whatever reading takes beyond its classification.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from app.barcodes.reader import BarcodeReader
from app.encoder.decode import DecodeBudget, ImageDecodeError, decode_photo

# A QR code or DataMatrix may carry kilobytes of any text; an answer (and the review queue's
# JSON, which PostgreSQL stores without NUL) keeps this much of it, as Unicode text.
MAX_TEXT = 512


def printable(text: str) -> str:
    """The code's text as answers carry it: no NUL, no lone surrogate, at most MAX_TEXT."""
    cleaned = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return cleaned[:MAX_TEXT]


@dataclass(frozen=True)
class SeenCode:
    """A code read from a photo; `box` in the upright photo's full-size pixels."""

    text: str
    format: str
    gtin: str | None  # GTIN-14 for a retail code, else None
    box: tuple[int, int, int, int]


class CodeReading:
    def __init__(
        self,
        reader: BarcodeReader,
        max_pixels: int,
        budget: DecodeBudget,
        read_side: int,
        threads: int = 2,
    ) -> None:
        self.reader = reader
        self.max_pixels = max_pixels
        self.budget = budget
        self.read_side = read_side
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="barcodes")

    def start(self, photo: bytes) -> asyncio.Task[list[SeenCode]]:
        """Read `photo` in the background; the task's result: its codes, [] for a photo that
        does not decode (the classification refuses it anyway)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.pool, functools.partial(self.read, photo))
        return asyncio.ensure_future(future)

    def read(self, photo: bytes) -> list[SeenCode]:
        """Blocking: the photo's codes; never raises."""
        side = self.read_side
        try:
            decoded = decode_photo(
                photo, self.max_pixels, lambda w, h: max(w, h) // side, self.budget, grey=True
            )
        except ImageDecodeError:
            return []
        sx = decoded.width / decoded.image.width
        sy = decoded.height / decoded.image.height
        return [
            SeenCode(
                printable(code.text),
                str(code.format),
                code.gtin,
                (
                    round(code.box[0] * sx),
                    round(code.box[1] * sy),
                    round(code.box[2] * sx),
                    round(code.box[3] * sy),
                ),
            )
            for code in self.reader.read(decoded.image)
        ]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
