"""Shelf geometry and counting on hand-made box layouts whose answers are known: rows from
bottoms (level and tilted), places left to right, gaps, facings and shares, the must-have
list and every planogram status."""

from __future__ import annotations

import math

import pytest

from app.recognition.shelf_checks import check_planogram, facings, missing_must_haves
from app.recognition.shelf_layout import Box, arrange


def shelf_row(
    bottom: float, lefts: list[float], width: float = 40, height: float = 80
) -> list[Box]:
    return [(x, bottom - height, x + width, bottom) for x in lefts]


def rotated(boxes: list[Box], degrees: float, centre: tuple[float, float]) -> list[Box]:
    """The boxes of a photo turned by `degrees` (each box: its turned corners' extent)."""
    a = math.radians(degrees)
    cx, cy = centre

    def turn(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + dx * math.cos(a) - dy * math.sin(a), cy + dx * math.sin(a) + dy * math.cos(a)

    out = []
    for x0, y0, x1, y1 in boxes:
        corners = [turn(x, y) for x in (x0, x1) for y in (y0, y1)]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        out.append((min(xs), min(ys), max(xs), max(ys)))
    return out


def test_three_level_shelves_are_three_rows_top_to_bottom_left_to_right() -> None:
    top = shelf_row(100, [10, 55, 100, 145])
    middle = shelf_row(250, [10, 60, 110], height=120)  # taller products, one board
    bottom = shelf_row(400, [20, 70, 120, 170, 220])
    boxes = bottom + top + middle  # in no particular order
    layout = arrange(boxes)
    assert [len(row.members) for row in layout.rows] == [4, 3, 5]
    for row, source in zip(layout.rows, (top, middle, bottom), strict=True):
        assert [boxes[i] for i in row.members] == source  # left to right
    assert layout.shelf_of[0] == 2 and layout.position_of[0] == 0  # bottom's leftmost
    assert layout.shelf_of[len(bottom)] == 0 and layout.position_of[len(bottom) + 3] == 3
    assert layout.rows[0].box == (10, 20, 185, 100)
    assert layout.gaps == [] and layout.slant == 0.0


def test_products_of_different_heights_on_one_board_share_a_row() -> None:
    boxes = [(0, 20, 30, 100), (32, 60, 70, 100), (72, 0, 95, 101), (97, 50, 140, 99)]
    layout = arrange(boxes)
    assert len(layout.rows) == 1 and layout.position_of == [0, 1, 2, 3]


@pytest.mark.parametrize("degrees", [-6.0, -3.0, 3.0, 6.0])
def test_a_tilted_photo_still_gives_its_rows(degrees: float) -> None:
    """Turned by a few degrees, a long row's bottoms drift further than the row spacing's
    tolerance from one end to the other; the slant is taken out first."""
    rows = [shelf_row(b, [10 + 45 * i for i in range(14)], height=70) for b in (100, 220, 340)]
    boxes = rotated([box for row in rows for box in row], degrees, (330, 220))
    layout = arrange(boxes)
    assert [len(row.members) for row in layout.rows] == [14, 14, 14]
    assert layout.shelf_of == [0] * 14 + [1] * 14 + [2] * 14
    assert layout.position_of == list(range(14)) * 3
    assert layout.slant == pytest.approx(math.tan(math.radians(degrees)), abs=0.02)


def test_a_gap_is_wider_than_the_facings_beside_it() -> None:
    # Facings 40 px wide: a 20 px space is no gap, a 50 px one is.
    boxes = shelf_row(100, [0, 40, 100, 190, 230])
    layout = arrange(boxes)
    [gap] = layout.gaps
    assert (gap.shelf, gap.after, gap.width) == (0, 2, 50)
    assert gap.box == (140, 20, 190, 100)


def test_no_boxes_no_layout() -> None:
    layout = arrange([])
    assert layout.rows == [] and layout.gaps == []


def test_facings_count_shares_by_count_and_by_width_unknown_apart() -> None:
    keys = ["cola", "cola", "fanta", None, "cola"]
    widths = [40.0, 40.0, 80.0, 40.0, 40.0]
    found = {f.key: f for f in facings(keys, widths)}
    assert [f.key for f in facings(keys, widths)] == ["cola", "fanta", None]  # unknown last
    assert (found["cola"].count, found["cola"].share, found["cola"].width_share) == (3, 0.6, 0.5)
    assert (found["fanta"].count, found["fanta"].share, found["fanta"].width_share) == (
        1,
        0.2,
        0.3333,
    )
    assert (found[None].count, found[None].share) == (1, 0.2)


def test_must_haves_not_found_are_listed_in_order() -> None:
    assert missing_must_haves(["a", "b", "c", "a"], {"b"}) == ["a", "c"]
    assert missing_must_haves([], {"b"}) == []


PLAN = [[("cola", 2), ("fanta", 1)], [("water", 3)]]


def test_a_shelf_as_planned_scores_one() -> None:
    check = check_planogram(PLAN, [["cola", "cola", "fanta"], ["water", "water", "water"]])
    assert check.score == 1.0 and check.unplanned == []
    assert all(p.status == "ok" for p in check.positions) and len(check.positions) == 6


def test_every_status_where_it_happens() -> None:
    # Shelf 0: an extra fanta at the left (the colas are still in their order), then a sprite
    # where the fanta should stand; shelf 1: one water missing.
    found = [["fanta", "cola", "cola", "sprite"], ["water", "water"]]
    check = check_planogram(PLAN, found)
    first = [(p.position, p.expected, p.found, p.status) for p in check.positions if p.shelf == 0]
    assert first == [
        (0, "cola", "cola", "ok"),
        (1, "cola", "cola", "ok"),
        (2, "fanta", "sprite", "wrong_product"),
    ]
    # Which of three equal waters is the missing one, the plan cannot say: one of them.
    second = sorted((p.status, p.found or "") for p in check.positions if p.shelf == 1)
    assert second == [("missing", ""), ("ok", "water"), ("ok", "water")]
    assert check.unplanned == ["sprite"]
    assert check.score == 0.6667


def test_one_facing_removed_is_one_missing_not_a_shifted_row() -> None:
    plan = [[("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)]]
    check = check_planogram(plan, [["a", "b", "d", "e"]])
    assert [(p.expected, p.status) for p in check.positions] == [
        ("a", "ok"),
        ("b", "ok"),
        ("c", "missing"),
        ("d", "ok"),
        ("e", "ok"),
    ]
    assert check.score == 0.8


def test_two_products_swapped_are_two_wrong_products() -> None:
    plan = [[("a", 1), ("b", 1), ("c", 1)]]
    check = check_planogram(plan, [["b", "a", "c"]])
    assert [(p.expected, p.found, p.status) for p in check.positions] == [
        ("a", "b", "wrong_product"),
        ("b", "a", "wrong_product"),
        ("c", "c", "ok"),
    ]


def test_a_planned_shelf_the_photo_lacks_is_all_missing() -> None:
    check = check_planogram(PLAN, [["cola", "cola", "fanta"]])
    assert [p.status for p in check.positions if p.shelf == 1] == ["missing"] * 3
    assert check.score == 0.5


def test_unknown_facings_never_count_as_in_place() -> None:
    check = check_planogram([[("cola", 2)]], [["cola", None]])
    assert [(p.found, p.status) for p in check.positions] == [
        ("cola", "ok"),
        (None, "wrong_product"),
    ]
