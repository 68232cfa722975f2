"""Rendered shelves: seeded, boxes inside the photo, the folder format, the preview grid."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.paths import GROCERY
from training.shelves.dataset import read_folder, write_photo
from training.shelves.render import RenderConfig, render_shelf
from training.shelves.sources import SourceBank, load_bank

SMALL = RenderConfig(long_side=320, product_px=(30.0, 120.0))


def test_the_same_seed_renders_the_same_photo(bank: SourceBank) -> None:
    a, b = render_shelf(bank, 7, SMALL), render_shelf(bank, 7, SMALL)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.labels.boxes, b.labels.boxes)
    c = render_shelf(bank, 8, SMALL)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("seed", range(6))
def test_boxes_lie_inside_the_photo_and_are_not_empty(bank: SourceBank, seed: int) -> None:
    shelf = render_shelf(bank, seed, SMALL)
    h, w = shelf.image.shape[:2]
    assert max(h, w) == 320 and shelf.image.dtype == np.uint8
    for boxes in (shelf.labels.boxes, shelf.labels.ignore):
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert len(shelf.labels.kinds) == len(shelf.labels.boxes)


def test_every_scene_kind_appears_and_rendering_is_fast(bank: SourceBank) -> None:
    cfg = RenderConfig(long_side=512, product_px=(40.0, 120.0), fridge_share=0.5)
    started = time.perf_counter()
    shelves = [render_shelf(bank, seed, cfg) for seed in range(10)]
    assert (time.perf_counter() - started) / 10 < 1.0
    assert {"shelf", "fridge-glass"} <= {s.scene for s in shelves}
    assert sum(len(s.labels.boxes) for s in shelves) > 20


def test_without_glass_no_glass_door_is_drawn(bank: SourceBank) -> None:
    cfg = RenderConfig(long_side=256, fridge_share=1.0, glass=False, closeup_share=0.0)
    assert {render_shelf(bank, s, cfg).scene for s in range(6)} == {"fridge"}


def test_a_rendered_folder_reads_back(tmp_path: Path, bank: SourceBank) -> None:
    write_photo(tmp_path, 0, bank, seed=1, cfg=SMALL)
    write_photo(tmp_path, 1, bank, seed=1, cfg=SMALL)
    records = read_folder(tmp_path)
    assert [r.image.name for r in records] == ["000000.jpg", "000001.jpg"]
    again = render_shelf(bank, 1 * 1_000_003 + 1, SMALL)
    assert np.allclose(records[1].boxes, again.labels.boxes, atol=0.05)


def test_the_grocery_store_bank_cuts_out_every_catalogue_product() -> None:
    if not (GROCERY / "classes.csv").is_file():
        pytest.skip(f"Grocery Store set not at {GROCERY}")
    bank = load_bank(GROCERY, instore=False)
    assert len(bank.cutouts) == 81 and len(bank.packages) == 31
    for sprite in bank.packages:
        h, w = sprite.alpha.shape
        # The package fills its cut-out's middle (white cartons too); the corners are gone.
        assert sprite.alpha[h // 2, w // 2] > 0.5
        assert 0.6 < sprite.alpha.mean() < 0.99


def test_every_product_maker_fills_exactly_the_size_asked_for() -> None:
    from training.shelves.products import MAKERS

    rng = np.random.default_rng(0)
    for kind, make in MAKERS.items():
        for w in range(2, 41, 3):
            for h in range(2, 41, 5):
                sprite = make(np.zeros((h, w, 3), np.uint8), w, h, rng)
                assert sprite.rgb.shape == (h, w, 3) and sprite.alpha.shape == (h, w), kind
                assert sprite.alpha.min() >= 0 and sprite.alpha.max() <= 1
