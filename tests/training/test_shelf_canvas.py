"""The renderer's bookkeeping: a box is exactly what a product shows; occlusion rules."""

from __future__ import annotations

import numpy as np

from training.shelves.canvas import Canvas, labels
from training.shelves.render import visible_fraction
from training.shelves.sources import Sprite, cut_out


def block(w: int, h: int, value: int = 200) -> Sprite:
    return Sprite(np.full((h, w, 3), value, np.uint8), np.ones((h, w), np.float32))


def boxes_of(canvas: Canvas) -> tuple[np.ndarray, np.ndarray]:
    found = labels(canvas.owner, visible_fraction(canvas.owner, canvas.full_area), canvas.kinds)
    return found.boxes, found.ignore


def test_a_product_fully_inside_gets_exactly_its_pasted_box() -> None:
    canvas = Canvas(200, 150)
    canvas.paste(block(30, 70), 40, 50, "can")
    boxes, ignore = boxes_of(canvas)
    assert boxes.tolist() == [[40, 50, 70, 120]]
    assert ignore.size == 0
    assert (canvas.rgb[50:120, 40:70] == 200).all()  # and the pixels are really there


def test_a_shaped_product_is_boxed_by_its_opaque_pixels() -> None:
    alpha = np.zeros((60, 40), np.float32)
    alpha[10:50, 5:35] = 1.0  # transparent margin around the product
    canvas = Canvas(100, 100)
    canvas.paste(Sprite(np.zeros((60, 40, 3), np.uint8), alpha), 20, 10, "bottle")
    boxes, _ = boxes_of(canvas)
    assert boxes.tolist() == [[25, 20, 55, 60]]


def test_a_half_hidden_product_becomes_an_ignore_region() -> None:
    canvas = Canvas(200, 200)
    canvas.paste(block(40, 100), 50, 50, "can")  # behind
    canvas.paste(block(40, 60), 50, 90, "can")  # in front: hides 60 % of the first
    boxes, ignore = boxes_of(canvas)
    assert boxes.tolist() == [[50, 90, 90, 150]]
    assert ignore.tolist() == [[50, 50, 90, 90]]  # the visible top of the one behind


def test_the_top_of_a_product_behind_the_front_row_is_background() -> None:
    canvas = Canvas(200, 200)
    canvas.paste(block(40, 100), 50, 50, "bottle")  # the next one in the lane
    canvas.paste(block(40, 80), 50, 70, "bottle")  # the front facing hides 80 % of it
    boxes, ignore = boxes_of(canvas)
    assert boxes.tolist() == [[50, 70, 90, 150]]
    assert ignore.size == 0


def test_a_partly_hidden_product_keeps_its_visible_extent() -> None:
    canvas = Canvas(200, 200)
    canvas.paste(block(40, 100), 50, 50, "carton")
    # A price rail (not a product) over its bottom fifth.
    canvas.paint((0, 130, 200, 150), np.array([9.0, 9.0, 9.0]), np.ones((20, 200), np.float32))
    boxes, ignore = boxes_of(canvas)
    assert boxes.tolist() == [[50, 50, 90, 130]]
    assert ignore.size == 0


def test_products_cut_by_the_frame_count_what_falls_outside() -> None:
    canvas = Canvas(100, 100)
    canvas.paste(block(40, 50), -10, 10, "box")  # a quarter outside: kept, clipped
    canvas.paste(block(40, 50), 80, 10, "box")  # 20 of 40 columns inside: kept
    canvas.paste(block(40, 40), 84, 60, "box")  # 16 of 40 columns inside: ignored
    canvas.paste(block(40, 40), -36, 60, "box")  # 4 of 40 columns inside: background
    boxes, ignore = boxes_of(canvas)
    assert sorted(boxes.tolist()) == [[0, 10, 30, 60], [80, 10, 100, 60]]
    assert ignore.tolist() == [[84, 60, 100, 100]]


def test_glass_and_glare_do_not_hide_products() -> None:
    canvas = Canvas(100, 100)
    canvas.paste(block(30, 60), 10, 10, "bottle")
    haze = np.full((100, 100), 0.6, np.float32)
    canvas.paint((0, 0, 100, 100), np.array([255.0, 255.0, 255.0]), haze)
    boxes, _ = boxes_of(canvas)
    assert boxes.tolist() == [[10, 10, 40, 70]]


def test_cut_out_separates_a_product_from_its_white_background() -> None:
    rgb = np.full((100, 80, 3), 250, np.uint8)
    rgb[20:90, 15:60] = (200, 40, 40)
    sprite = cut_out(rgb)
    assert sprite.size == (45, 70)
    assert sprite.alpha[35, 22] == 1.0
