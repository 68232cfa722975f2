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
ONE_PRODUCT = [  # catalogue shots: one package on white
    "Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_Iconic.jpg",
    "Packages/Juice/Tropicana-Apple-Juice/Tropicana-Apple-Juice_Iconic.jpg",
    "Packages/Yoghurt/Arla-Mild-Vanilla-Yoghurt/Arla-Mild-Vanilla-Yoghurt_Iconic.jpg",
]


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


@pytest.mark.parametrize("relative", ONE_PRODUCT)
def test_a_photo_of_one_product_gives_one_box_around_it(
    detector: ProductDetector, relative: str
) -> None:
    path = GROCERY / "iconic-images-and-descriptions" / relative
    with Image.open(path) as image:
        found = detector.detect(image)
        rgb = np.asarray(image.convert("RGB"))
    assert len(found) == 1
    truth = product_box(rgb)
    assert iou_matrix(np.asarray([found[0].box], np.float32), truth[None])[0, 0] > 0.7


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
