"""The shipped detector behind a real server: POST /shelf without boxes over HTTP finds the
products of a real corner-shop photo, one box for a photo of one product, none on a blank wall."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.paths import GROCERY, SHARED
from tests.support.servers import LiveServer, running_server
from training.detector.evaluate import read_voc_folder
from training.detector.metrics import PhotoResult, recall

CORNERSHOP = SHARED / "data/cornershop-dev/photos"
ICONIC = GROCERY / "iconic-images-and-descriptions"
MILK = ICONIC / "Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_Iconic.jpg"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_server(tmp_path_factory.mktemp("shelf-detector")) as server:
        yield server


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=120, verify=live.verify) as c:
        made = c.post(
            "/products",
            data={"sku": "arla-milk", "name": "Arla Standard Milk"},
            files={"images": (MILK.name, MILK.read_bytes(), "image/jpeg")},
        )
        assert made.status_code == 201, made.text
        yield c


def audit(client: httpx.Client, data: bytes) -> dict:
    answer = client.post("/shelf", files={"image": ("shelf.jpg", data, "image/jpeg")})
    assert answer.status_code == 200, answer.text
    report: dict = answer.json()
    return report


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_the_server_loads_the_shipped_detector(client: httpx.Client) -> None:
    assert str(client.get("/readyz").json()["detector"]).startswith("retailklip-detector")


def test_a_real_shelf_photo_without_boxes_is_detected_and_counted(client: httpx.Client) -> None:
    if not CORNERSHOP.is_dir():
        pytest.fail(f"cornershop-dev photos not found at {CORNERSHOP} (RETAILKLIP_SHARED_DIR)")
    photo = next(p for p in read_voc_folder(CORNERSHOP) if p.path.stem == "p25")
    report = audit(client, Path(photo.path).read_bytes())
    regions = report["regions"]
    assert len(regions) >= 20
    assert str(report["detector"]).startswith("retailklip-detector")
    assert all(0 < r["detection"] <= 1 for r in regions)
    assert all(r["matches"] and r["verdict"] for r in regions)
    boxes = np.asarray([r["box"] for r in regions], np.float32)
    scores = np.asarray([r["detection"] for r in regions], np.float32)
    assert recall([PhotoResult(boxes, scores, photo.boxes)], 0.5) > 0.6
    assert sum(f["count"] for f in report["facings"]) == len(regions)  # unknown ones included
    assert sum(s["facings"] for s in report["shelves"]) == len(regions)


def test_a_photo_of_one_product_is_one_region_named_by_it(client: httpx.Client) -> None:
    report = audit(client, MILK.read_bytes())
    [region] = report["regions"]
    assert region["matches"][0]["sku"] == "arla-milk"


def test_a_blank_wall_has_no_regions(client: httpx.Client) -> None:
    wall = np.full((1200, 1600, 3), 128, np.uint8)
    report = audit(client, jpeg_bytes(wall))
    assert report["regions"] == [] and report["facings"] == []
