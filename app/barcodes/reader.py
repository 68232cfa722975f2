"""`BarcodeReader`: the codes a photo shows, read within a time budget.

The photo is read at the resolution a barcode needs, not the model's 224 px: a view reduced
to about `work_side` pixels (read with two binarizers, along both diagonals, and shifted by
half a pixel), then full-resolution tiles (`views.py`), for as long as the budget lasts.
When the first, upright read finds nothing, a cheap test (`gate.py`: a run of parallel bars
long enough to read, from sampled gradients) decides whether the photo can hold a linear code
at all; most photos cannot, and end there.
zxing-cpp cannot be interrupted, so the budget is kept by estimating each next view's cost
from the ms per pixel this photo's views have taken so far, and skipping what would overrun
it. Two things may run past it: the first view always runs (its cost is bounded by
`work_side`; the grey conversion and reduction before it by the photo's pixels), and so
does the first second look at a code that was read.

Wrong reads are kept out by checking rather than guessing: zxing-cpp accepts a linear code
only when two scan lines agree and its checksums hold; retail digits are checked again as
GTINs here (`symbols.py`), each needs a second, upright look to agree (`confirm.py`), and
inverted (light on dark) codes are not tried, since retail codes are printed dark on light.

Thread-safe: a reader holds only its settings, each call its own state; zxing-cpp releases
the GIL while it reads, so readers on a thread pool run in parallel and leave the event loop
free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import zxingcpp
from PIL import Image

from app.barcodes.confirm import confirmed, piece_of_long
from app.barcodes.formats import (
    DEFAULT_FORMATS,
    LINEAR,
    RETAIL,
    SHORT,
    CodeFormat,
    zxing_formats,
)
from app.barcodes.gate import may_hold_code
from app.barcodes.symbols import ReadCode, to_code
from app.barcodes.views import KINDS, Kind, Step, View, plan, reduction

__all__ = ["BarcodeReader", "ReadCode", "ReadStats"]

log = logging.getLogger(__name__)

DEFAULT_BUDGET_MS = 100.0
DEFAULT_WORK_SIDE = 1600
# Each kind's cost per pixel it starts from, relative to an upright read, until this photo
# has measured it: a diagonal view reads twice the pixels, its rows only, and pays for the
# shear; a shifted one pays for the 2x2 means.
PRIOR_COST: dict[Kind, float] = {"upright": 1.0, "threshold": 1.0, "diagonal": 1.5, "shifted": 1.5}
LOCAL, FIXED = zxingcpp.Binarizer.LocalAverage, zxingcpp.Binarizer.FixedThreshold
# Second looks per code text (each from another view's read of it, at another place).
MAX_TRIES = 2
# Images with a side shorter than this hold no readable code (EAN-13 is 95 modules wide).
MIN_SIDE = 16


@dataclass
class ReadStats:
    """What one `read` did (for the bench): views read and skipped, the gate's answer (None
    when it was not asked: the first view read a code, the gate is off, or a 2D format is
    wanted), and its time: wall-clock ms (what the budget counts) and this thread's CPU ms
    (the same on a machine shared with other work, where wall-clock time waits for a core)."""

    gate: bool | None = None
    views_read: int = 0
    views_skipped: int = 0
    ms: float = 0.0
    cpu_ms: float = 0.0
    kinds: list[Kind] = field(default_factory=list)


class _Clock:
    """Elapsed time, and each kind of view's cost per pixel as measured in this call."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.start_cpu = time.thread_time()
        self.spent: dict[Kind, tuple[float, int]] = {}

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def record(self, kind: Kind, ms: float, pixels: int) -> None:
        total, n = self.spent.get(kind, (0.0, 0))
        self.spent[kind] = (total + ms, n + pixels)

    def estimate_ms(self, step: Step) -> float:
        if step.kind in self.spent:
            total, n = self.spent[step.kind]
            return total / max(n, 1) * step.pixels
        total, n = self.spent.get("upright", (0.0, 1))
        return total / max(n, 1) * step.pixels * PRIOR_COST[step.kind]


class BarcodeReader:
    """Reads `formats` from photos, spending about `budget_ms` per photo at most.

    `work_side`: the long side (px) of the reduced view read first; photos larger than it are
    also read in full-resolution tiles while the budget lasts. `kinds`: the kinds of view to
    read (`views.Kind`; all by default, the bench leaves some out to show what each adds).
    `gate`: stop after the first view when it read nothing and the photo has no run of bars
    a code could be (`gate.py`); only when every format is linear (a QR code has no bars).
    """

    def __init__(
        self,
        formats: Iterable[CodeFormat] = DEFAULT_FORMATS,
        budget_ms: float = DEFAULT_BUDGET_MS,
        work_side: int = DEFAULT_WORK_SIDE,
        kinds: Iterable[Kind] = KINDS,
        gate: bool = True,
    ) -> None:
        self.formats = frozenset(formats)
        if not self.formats:
            raise ValueError("no barcode formats to read")
        if budget_ms <= 0:
            raise ValueError("budget_ms must be positive")
        if work_side < 256:
            raise ValueError("work_side must be at least 256 px")
        self.budget_ms = float(budget_ms)
        self.work_side = work_side
        self.kinds = frozenset(kinds)
        self.gate = gate and self.formats <= LINEAR
        self._zxing = zxing_formats(self.formats)

    def read(self, image: Image.Image, stats: ReadStats | None = None) -> list[ReadCode]:
        """Every code read in `image` (boxes in its pixels), each text once; [] when none or
        when the image cannot be read at all. Never raises."""
        clock = _Clock()
        try:
            return self._read(image, clock, stats if stats is not None else ReadStats())
        except Exception:  # a reader must not turn an odd image into a failed request
            log.warning(
                "barcode reading failed on a %s image", getattr(image, "size", "?"), exc_info=True
            )
            return []
        finally:
            if stats is not None:
                stats.ms = clock.elapsed_ms()
                stats.cpu_ms = (time.thread_time() - clock.start_cpu) * 1000

    def _read(self, image: Image.Image, clock: _Clock, stats: ReadStats) -> list[ReadCode]:
        if min(image.size) < MIN_SIDE:
            return []
        grey = np.asarray(image if image.mode == "L" else image.convert("L"))
        size = (grey.shape[1], grey.shape[0])
        codes: list[ReadCode] = []
        steps = (step for step in plan(grey, self.work_side) if step.kind in self.kinds)
        for i, step in enumerate(steps):
            if i == 1 and not codes and self.gate:
                scale = reduction(size[0], size[1], self.work_side)
                stats.gate = may_hold_code(grey, scale)
                if not stats.gate:
                    return []
            if i > 0 and clock.elapsed_ms() + clock.estimate_ms(step) > self.budget_ms:
                stats.views_skipped += 1
                continue
            began = clock.elapsed_ms()
            view = step.make()
            found = self._read_view(view, size)
            clock.record(step.kind, clock.elapsed_ms() - began, step.pixels)
            stats.views_read += 1
            stats.kinds.append(step.kind)
            codes.extend(found)
        return self._settle(grey, codes, clock)

    def _read_view(self, view: View, size: tuple[int, int]) -> list[ReadCode]:
        barcodes = zxingcpp.read_barcodes(
            view.pixels,
            formats=self._zxing,
            try_rotate=view.try_rotate,
            try_downscale=True,
            try_invert=False,
            binarizer=FIXED if view.fixed_threshold else LOCAL,
        )
        return [c for b in barcodes if (c := to_code(b, self.formats, view.to_photo, size))]

    def _settle(self, grey: np.ndarray, codes: list[ReadCode], clock: _Clock) -> list[ReadCode]:
        """One entry per text; retail codes only where a second look agrees (`confirm.py`).
        The first second look runs even when the views spent the budget (a code that was
        read is worth a few more ms), the others only within it."""
        accepted: dict[tuple[CodeFormat, str], ReadCode] = {}
        tries: dict[tuple[CodeFormat, str], int] = {}
        # Long codes first, so that pieces of them are known as such.
        for code in sorted(codes, key=lambda c: c.format in SHORT):
            key = (code.format, code.text)
            if key in accepted or tries.get(key, 0) >= MAX_TRIES:
                continue
            if code.format not in RETAIL:
                accepted[key] = code  # checksums and error correction of their own
                continue
            if piece_of_long(code, list(accepted.values())):
                continue
            if tries and clock.elapsed_ms() > self.budget_ms:
                break
            tries[key] = tries.get(key, 0) + 1
            again = confirmed(grey, code, self.formats)
            if again is not None:
                accepted[key] = again
        return list(accepted.values())
