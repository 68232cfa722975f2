"""The shipped detector graph, served as the service serves it, on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.detector.product_detector import ProductDetector
from tests.support.paths import GROCERY, REPO, SHARED
from training.detector.evaluate import read_voc_folder
from training.detector.metrics import PhotoResult, iou_matrix, recall

GRAPH = REPO / "app/models/retailklip-detector-lite0.onnx"
CORNERSHOP = SHARED / "data/cornershop-dev/photos"
# Catalogue shots of packages: one package on white, each (the fruit and vegetable shots show
# loose produce, several pieces).
PACKAGE_SHOTS = sorted((GROCERY / "iconic-images-and-descriptions/Packages").rglob("*_Iconic.jpg"))
# The shipped graph boxes 26 of the 31 as one product; the rest it splits in two (a carton and
# a picture printed on it): docs/DETECTOR.md. A regression guard below that, not a target.
ONE_BOX_SHARE = 0.8


@pytest.fixture(scope="module")
def detector() -> ProductDetector:
    return ProductDetector.load(GRAPH, threads=2)


def test_the_graph_is_small_and_names_itself(detector: ProductDetector) -> None:
    assert GRAPH.stat().st_size < 40 * 2**20
    assert detector.model_id.startswith("retailklip-detector")
    assert 0 < detector.metadata.score_threshold < 1


def test_it_finds_the_products_on_a_real_shelf_photo(detector: ProductDetector) -> None:
    if not CORNERSHOP.is_dir():
        pytest.fail(f"cornershop-dev photos not found at {CORNERSHOP} (RETAILKLIP_SHARED_DIR)")
    photo = next(p for p in read_voc_folder(CORNERSHOP) if p.path.stem == "p25")
    with Image.open(photo.path) as image:
        found = detector.detect(image)
    assert 20 <= len(found) <= detector.metadata.max_boxes
    boxes = np.asarray([d.box for d in found], np.float32)
    scores = np.asarray([d.score for d in found], np.float32)
    assert recall([PhotoResult(boxes, scores, photo.boxes)], 0.5) > 0.6
    assert all(0 <= b[0] < b[2] <= 3024 and 0 <= b[1] < b[3] <= 4032 for b in boxes)


def test_a_photo_of_one_product_gives_one_box_around_it(detector: ProductDetector) -> None:
    assert len(PACKAGE_SHOTS) == 31, f"Grocery Store catalogue shots not found under {GROCERY}"
    wrong = []
    for path in PACKAGE_SHOTS:
        with Image.open(path) as image:
            found = detector.detect(image)
            rgb = np.asarray(image.convert("RGB"))
        truth = product_box(rgb)
        boxes = np.asarray([d.box for d in found], np.float32).reshape(-1, 4)
        if len(found) != 1 or iou_matrix(boxes, truth[None])[0, 0] <= 0.7:
            wrong.append(f"{path.stem}: {len(found)} boxes")
    share = 1 - len(wrong) / len(PACKAGE_SHOTS)
    assert share >= ONE_BOX_SHARE, f"one box around the package on {share:.0%}: {wrong}"


def product_box(rgb: np.ndarray) -> np.ndarray:
    """Bounding box of what is not near-white background."""
    ys, xs = np.nonzero(rgb.min(axis=2) < 232)
    return np.asarray([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("noise", [0.0, 12.0])
def test_a_blank_wall_gives_no_box(detector: ProductDetector, noise: float) -> None:
    rng = np.random.default_rng(0)
    wall = (
        128 + rng.normal(0, noise, size=(1200, 1600, 3))
        if noise
        else np.full((1200, 1600, 3), 128.0)
    )
    image = Image.fromarray(np.clip(wall, 0, 255).astype(np.uint8))
    assert detector.detect(image) == []
