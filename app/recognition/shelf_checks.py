"""What a shelf audit counts and checks, from the named facings and their rows: facings per
SKU (and per metadata value), the must-have list, and the planogram.

A planogram is written by hand: the shelves top to bottom, each a list of `{sku, facings}` left
to right. Each shelf's planned facings are aligned with the facings found on the row of the
same index (an edit-distance alignment, so one missing facing does not shift every facing
after it): a planned facing found in place is `ok`, one where another product (or an unknown
one) stands is `wrong_product`, one with nothing in its place is `missing`. The score is the
share of planned facings found in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "wrong_product", "missing"]


@dataclass(frozen=True)
class Facings:
    """One SKU's facings (`sku` None: the unknown ones), or one metadata value's (`value`)."""

    key: str | None
    count: int
    share: float  # of all facings counted, unknown ones included
    width_share: float  # of the summed widths of all facings


def facings(keys: Sequence[str | None], widths: Sequence[float]) -> list[Facings]:
    """Per key (None: unknown), most facings first, then by key; unknown last."""
    total = len(keys)
    width = sum(widths) or 1.0
    counts: dict[str | None, tuple[int, float]] = {}
    for key, w in zip(keys, widths, strict=True):
        n, wide = counts.get(key, (0, 0.0))
        counts[key] = (n + 1, wide + w)
    ranked = sorted(counts.items(), key=lambda kv: (kv[0] is None, -kv[1][0], kv[0] or ""))
    return [
        Facings(key, n, round(n / total, 4), round(wide / width, 4)) for key, (n, wide) in ranked
    ]


@dataclass(frozen=True)
class PlannedFacing:
    shelf: int
    position: int  # in the plan's shelf, left to right
    expected: str


@dataclass(frozen=True)
class PositionCheck:
    shelf: int
    position: int
    expected: str
    found: str | None  # what stands there (None: nothing, or an unknown product)
    status: Status


@dataclass(frozen=True)
class PlanogramCheck:
    positions: list[PositionCheck]
    unplanned: list[str]  # SKUs found that the plan does not have
    score: float  # planned facings found in place / planned facings


# One shelf of a plan: (sku, facings) left to right.
PlanShelf = Sequence[tuple[str, int]]


def _align(planned: list[str], found: list[str | None]) -> list[tuple[int | None, int | None]]:
    """Edit-distance alignment: pairs (planned index, found index), None on either side for a
    facing the other lacks. Ties prefer pairing (a swap reads as two wrong products)."""
    n, m = len(planned), len(found)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            same = planned[i - 1] == found[j - 1]
            cost[i][j] = min(
                cost[i - 1][j - 1] + (0 if same else 1), cost[i - 1][j] + 1, cost[i][j - 1] + 1
            )
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0:
            same = planned[i - 1] == found[j - 1]
            if cost[i][j] == cost[i - 1][j - 1] + (0 if same else 1):
                pairs.append((i - 1, j - 1))
                i, j = i - 1, j - 1
                continue
        if i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return pairs[::-1]


def check_planogram(
    plan: Sequence[PlanShelf], rows: Sequence[Sequence[str | None]]
) -> PlanogramCheck:
    """`rows`: the SKU found at each facing of each row (None: unknown), top to bottom, left
    to right."""
    positions: list[PositionCheck] = []
    for s, shelf in enumerate(plan):
        planned = [sku for sku, count in shelf for _ in range(count)]
        found = list(rows[s]) if s < len(rows) else []
        for p, f in _align(planned, found):
            if p is None:
                continue  # a facing the plan does not have at this place
            got = None if f is None else found[f]
            status: Status = (
                "missing" if f is None else "ok" if got == planned[p] else "wrong_product"
            )
            positions.append(PositionCheck(s, p, planned[p], got, status))
    in_plan = {sku for shelf in plan for sku, _ in shelf}
    found_skus = {sku for row in rows for sku in row if sku is not None}
    ok = sum(c.status == "ok" for c in positions)
    return PlanogramCheck(
        positions,
        sorted(found_skus - in_plan),
        round(ok / len(positions), 4) if positions else 1.0,
    )


def missing_must_haves(must_have: Sequence[str], found: set[str]) -> list[str]:
    """The listed SKUs not found, in the list's order."""
    return [sku for sku in dict.fromkeys(must_have) if sku not in found]
