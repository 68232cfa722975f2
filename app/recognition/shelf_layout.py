"""A shelf photo's geometry from its product boxes alone: the rows (shelves), each product's
place in its row, and the gaps between facings.

Products standing on one board share a bottom edge. A phone photo is rarely level, so the
bottoms of one board lie on a slanted line: the slant is estimated from neighbouring facings
(the median slope between each box's bottom and its right-hand neighbour's, among boxes that
overlap vertically), the bottoms are de-skewed by it, and rows are where the de-skewed bottoms
jump by more than a third of a typical product's height. Rows run top to bottom, facings left
to right. A product stacked on another (not on the board) forms a row of its own: its bottom
is a product's height above the board.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass

Box = tuple[float, float, float, float]

ROW_JUMP = 0.35  # of the median box height: bottoms further apart belong to different rows
MAX_SLANT = 0.35  # |dy/dx| of a board's bottom line; steeper pairs are not neighbours on it


@dataclass(frozen=True)
class Row:
    """One shelf: its facings' indices (into the boxes given) left to right, and the extent
    of its boxes in the photo."""

    index: int  # 0 = the top row
    members: tuple[int, ...]
    box: Box


@dataclass(frozen=True)
class Gap:
    """An empty stretch between two facings of a row, wider than the narrower of them: room
    for at least one more facing (an out-of-stock candidate)."""

    shelf: int
    after: int  # the position of the facing on its left
    box: Box
    width: float


@dataclass(frozen=True)
class Layout:
    rows: list[Row]
    shelf_of: list[int]  # per box: its row
    position_of: list[int]  # per box: its place in the row, 0 = leftmost
    gaps: list[Gap]
    slant: float  # the bottoms' slope that was taken out (dy per dx)


def _slant(boxes: list[Box]) -> float:
    """Median bottom-edge slope between each box and its nearest right-hand neighbour on the
    same level (vertical overlap of at least half the shorter box)."""
    slopes = []
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        cx = (x0 + x1) / 2
        best: tuple[float, float] | None = None
        for j, (u0, v0, u1, v1) in enumerate(boxes):
            cu = (u0 + u1) / 2
            if j == i or cu <= cx:
                continue
            overlap = min(y1, v1) - max(y0, v0)
            if overlap < 0.5 * min(y1 - y0, v1 - v0):
                continue
            if best is None or cu - cx < best[0]:
                best = (cu - cx, (v1 - y1) / (cu - cx))
        if best is not None and abs(best[1]) <= MAX_SLANT:
            slopes.append(best[1])
    return statistics.median(slopes) if slopes else 0.0


def arrange(boxes: list[Box]) -> Layout:
    if not boxes:
        return Layout([], [], [], [], 0.0)
    slant = _slant(boxes)
    height = statistics.median(y1 - y0 for _, y0, _, y1 in boxes)
    level = [y1 - slant * (x0 + x1) / 2 for x0, _, x1, y1 in boxes]
    order = sorted(range(len(boxes)), key=lambda i: level[i])
    groups: list[list[int]] = [[order[0]]]
    for previous, i in itertools.pairwise(order):
        if level[i] - level[previous] > ROW_JUMP * height:
            groups.append([])
        groups[-1].append(i)
    shelf_of = [0] * len(boxes)
    position_of = [0] * len(boxes)
    rows, gaps = [], []
    for r, group in enumerate(groups):  # sorted by level: top row first
        members = sorted(group, key=lambda i: (boxes[i][0] + boxes[i][2]) / 2)
        for p, i in enumerate(members):
            shelf_of[i], position_of[i] = r, p
        extent = (
            min(boxes[i][0] for i in members),
            min(boxes[i][1] for i in members),
            max(boxes[i][2] for i in members),
            max(boxes[i][3] for i in members),
        )
        rows.append(Row(r, tuple(members), extent))
        for p, (left, right) in enumerate(itertools.pairwise(members)):
            a, b = boxes[left], boxes[right]
            width = b[0] - a[2]
            if width > min(a[2] - a[0], b[2] - b[0]):
                gap_box = (a[2], min(a[1], b[1]), b[0], max(a[3], b[3]))
                gaps.append(Gap(r, p, gap_box, width))
    return Layout(rows, shelf_of, position_of, gaps, slant)
