"""The gate: can this photo hold a readable linear code at all? About a millisecond a megapixel.

Most photos sent to the service show no barcode, and reading one to the end of the reader's
plan costs 20-60 ms of CPU (docs/BARCODES.md). The gate looks for what every EAN/UPC symbol
is: a run of parallel bars, dark on light, one direction of gradient over a stretch at least
as long as the shortest symbol the views can read. Where there is none, the reader stops.

How (`may_hold_code`):

1. **Gradients, sampled.** Roberts differences (the two diagonals of a 2x2 cell, at the
   photo's own resolution, so bars of 1 px still count) on a sparse grid: 2 row pairs and 3
   columns in each block of `BLOCK` px (times the work view's reduction), about a tenth of the
   pixels. The positions are jittered (a golden-ratio phase from block to block and row to
   row): a regular grid misses every edge of a code whose bars fall on a lattice of the
   grid's period (an upright code of 4 px modules sampled every 2nd column has edges only
   between the samples).
2. **Windows** of `WINDOW` x `WINDOW` blocks, one block apart: the structure tensor of their
   gradients (its energy: the mean squared difference; its coherence: how much of that lies
   along one direction, 1 for parallel bars) and the variance of their grey levels. A window
   is *bar-like* when all three pass (`MIN_COHERENCE`, `MIN_ENERGY`, `MIN_VARIANCE`).
3. **A run along the normal.** The photo passes when `MIN_RUN` bar-like windows follow each
   other across the bars (their normal quantised to `DIRECTIONS` directions, each next window
   within one direction of it). This is what sets a code apart from most other parallel
   lines in a photo: the lip of a shelf, the rims of stacked cans and a price label's own
   small barcode are bar-like over a few windows, a readable EAN-13 over at least 95 px (a
   wire rack's long run of bars still passes).

Measured on bench/barcodes.py's pasted codes and on photos without one (docs/BARCODES.md,
"The gate"). The gate is for linear codes only (tuned on EAN/UPC; it knows nothing of a QR
code's or DataMatrix's square modules), so the reader does not ask it when those are wanted.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["may_hold_code"]

# Block side in px of the work view (BLOCK * scale in the photo's pixels); samples per block.
BLOCK = 8
ROWS, COLS = 2, 3
SAMPLES = ROWS * COLS
# Row patterns of columns, repeated down the photo (each row pair gets another phase).
CYCLE = 8
WINDOW = 3  # blocks: 24 px of the work view, the shortest bar height worth reading
# A bar-like window (measured on the bench: see docs/BARCODES.md):
MIN_COHERENCE = 0.9
# The mean of d1^2 + d2^2 over its samples. A black-on-white code's windows measure
# 5,000-40,000 (blurred or JPEG-compressed ones the least), a smooth or blurred area of a photo
# under 1,000. It grows with the square of the contrast: bars printed at half of it give a
# quarter, and grey bars blurred or at 1.5 px per module then fall under it (the price of
# telling a shelf's dimmer lines from a code: docs/BARCODES.md).
MIN_ENERGY = 2000.0
# Grey-level variance: bars and spaces at least ~63 levels apart (a 50/50 pattern of contrast
# c has variance c^2 / 4).
MIN_VARIANCE = 1000.0
# Windows in a run across the bars: 10 windows one block apart span ~96 px, an EAN-13 at 1 px
# per module, the least the work view reads. When the photo was reduced for the work view,
# full-resolution tiles read smaller codes: 7 (72 px of the work view) is enough then.
MIN_RUN = 10
MIN_RUN_REDUCED = 7
DIRECTIONS = 8

_PHI = (1 + math.sqrt(5)) / 2


@lru_cache(maxsize=16)
def _rows(height: int, scale: int) -> np.ndarray:
    """The first row of each sampled row pair: ROWS per block, jittered."""
    side = BLOCK * scale
    i = np.arange((height - 1) // side)[:, None]
    phase = np.mod(i * _PHI + np.arange(ROWS)[None, :] / ROWS, 1.0)
    rows: np.ndarray = (i * side + np.floor(phase * (side - 1))).astype(np.intp).ravel()
    rows.setflags(write=False)
    return rows


@lru_cache(maxsize=16)
def _columns(width: int, scale: int) -> np.ndarray:
    """CYCLE patterns of COLS columns per block, each with its own phase (CYCLE, blocks * COLS)."""
    side = BLOCK * scale
    i = np.arange((width - 1) // side)[None, :, None]
    row = np.arange(CYCLE)[:, None, None]
    phase = np.mod(i * _PHI + row * math.sqrt(2) + np.arange(COLS)[None, None, :] / COLS, 1.0)
    columns: np.ndarray = (i * side + np.floor(phase * (side - 1))).astype(np.intp)
    columns = columns.reshape(CYCLE, -1)
    columns.setflags(write=False)
    return columns


def block_sums(grey: np.ndarray, scale: int = 1) -> np.ndarray:
    """Per block: the sums of d1^2, d2^2, d1*d2, v and v^2 over its samples (5, rows, columns),
    d1 and d2 the differences along a 2x2 cell's diagonals, v the grey level. Written to reuse
    two buffers: fresh arrays of this size cost more in page faults than in arithmetic."""
    height, width = grey.shape
    rows, columns = _rows(height, scale), _columns(width, scale)
    flat = np.ascontiguousarray(grey).reshape(-1)
    at = (rows * width)[:, None] + columns[np.arange(rows.size) % CYCLE]
    a = flat.take(at)
    d1 = np.subtract(flat[width + 1 :].take(at), a, dtype=np.int16)
    d2 = np.subtract(flat[1:].take(at), flat[width:].take(at), dtype=np.int16)
    term = np.empty(at.shape, np.float32)
    pairs = np.empty((at.shape[0] // ROWS, at.shape[1]), np.float32)
    sums = np.empty((5, pairs.shape[0], pairs.shape[1] // COLS), np.float32)
    for i, (x, y) in enumerate(((d1, d1), (d2, d2), (d1, d2), (a, None), (a, a))):
        if y is None:
            term[...] = x
        else:
            np.multiply(x, y, out=term, dtype=np.float32)
        np.add(term[0::ROWS], term[1::ROWS], out=pairs)
        for r in range(2, ROWS):
            pairs += term[r::ROWS]
        np.add(pairs[:, 0::COLS], pairs[:, 1::COLS], out=sums[i])
        for c in range(2, COLS):
            sums[i] += pairs[:, c::COLS]
    return sums


def _windows(sums: np.ndarray) -> np.ndarray:
    """The block sums added over WINDOW x WINDOW blocks, one block apart."""
    tall = sums.shape[1] - WINDOW + 1
    rows = sums[:, :tall].copy()
    for i in range(1, WINDOW):
        rows += sums[:, i : tall + i]
    wide = rows.shape[2] - WINDOW + 1
    out = rows[:, :, :wide].copy()
    for i in range(1, WINDOW):
        out += rows[:, :, i : wide + i]
    return out


def _normals(s11: np.ndarray, s22: np.ndarray, s12: np.ndarray) -> np.ndarray:
    """Each window's normal to the bars as a direction index 0..DIRECTIONS-1 (0: along x,
    DIRECTIONS/2: along y). The tensor is in the diagonals' frame (u = (1, 1), v = (1, -1)):
    its main axis at angle phi from u is (cos phi + sin phi, cos phi - sin phi) in x, y."""
    phi = 0.5 * np.arctan2(2 * s12, s11 - s22)
    theta = np.arctan2(np.cos(phi) - np.sin(phi), np.cos(phi) + np.sin(phi))
    normals: np.ndarray = np.round(np.mod(theta, np.pi) / (np.pi / DIRECTIONS)).astype(np.intp)
    return normals % DIRECTIONS


def bar_like(grey: np.ndarray, scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Which windows are bar-like (bool, rows x columns) and their normals' directions."""
    s11, s22, s12, sv, svv = _windows(block_sums(grey, scale))
    n = SAMPLES * WINDOW * WINDOW
    energy = s11 + s22
    mean = sv / n
    bars = (
        (energy >= MIN_ENERGY * n)
        & (svv / n - mean * mean >= MIN_VARIANCE)
        # coherence^2 = ((s11 - s22)^2 + 4 s12^2) / (s11 + s22)^2
        & ((s11 - s22) ** 2 + 4 * s12 * s12 >= (MIN_COHERENCE * energy) ** 2)
    )
    normals = np.zeros(bars.shape, np.intp)
    if bars.any():
        normals[bars] = _normals(s11[bars], s22[bars], s12[bars])
    return bars, normals


def longest_run(bars: np.ndarray, normals: np.ndarray, at_most: int) -> int:
    """The most bar-like windows in a row across their bars (up to `at_most`)."""
    height, width = bars.shape
    best = 1 if bars.any() else 0
    for d in range(DIRECTIONS):
        # Windows whose normal is this direction or a neighbouring one continue a run.
        off = (normals - d) % DIRECTIONS
        near = bars & ((off <= 1) | (off == DIRECTIONS - 1))
        run = near & (normals == d)
        angle = d * math.pi / DIRECTIONS
        steps = 1
        while steps < at_most and run.any():
            dx, dy = round(steps * math.cos(angle)), round(steps * math.sin(angle))
            if abs(dx) >= width or abs(dy) >= height:
                break
            # run[y, x] stays while near[y + dy, x + dx]
            ahead = np.zeros_like(near)
            ahead[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)] = near[
                max(0, dy) : height - max(0, -dy), max(0, dx) : width - max(0, -dx)
            ]
            run &= ahead
            if not run.any():
                break
            steps += 1
            best = max(best, steps)
    return best


def may_hold_code(grey: np.ndarray, scale: int = 1) -> bool:
    """Whether the photo (its grey pixels) may hold a readable linear code; `scale` is the
    reduction of the reader's work view (`views.reduction`). Photos too small to judge pass."""
    height, width = grey.shape
    side = BLOCK * scale
    if min(height, width) <= (WINDOW + 1) * side:
        return True
    bars, normals = bar_like(grey, scale)
    if not bars.any():
        return False
    needed = MIN_RUN if scale == 1 else MIN_RUN_REDUCED
    return longest_run(bars, normals, needed) >= needed
