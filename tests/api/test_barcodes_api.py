"""Products' barcodes through the API, in process, on SQLite and PostgreSQL: registered with a
product, added and removed later, unique across products (409 naming the holder), check digits
validated (422 saying the right one), found with `GET /products?barcode=`, stored and served as
GTIN-14 whatever length they were sent at."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.image_factory import jpeg
from tests.support.databases import backend_database
from tests.support.inprocess import in_process_client
from tests.support.paths import GROCERY

BANANA = GROCERY / "iconic-images-and-descriptions/Fruit/Banana/Banana_Iconic.jpg"
EAN13 = "4006381333931"  # a valid EAN-13
UPCA = "036000291452"  # a valid UPC-A (GTIN-12)
EAN8 = "96385074"  # a valid EAN-8


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp(f"barcodes-{request.param}")
    with (
        backend_database(request.param) as url,
        in_process_client(root / "data", database_url=url, detector="off") as c,
    ):
        yield c


def register(client: TestClient, sku: str, *barcodes: str) -> object:
    return client.post(
        "/products",
        data={"sku": sku, "name": sku, "barcodes": list(barcodes)},
        files=[("images", jpeg(BANANA))],
    )


def test_barcodes_are_registered_normalised_found_and_unique(client: TestClient) -> None:
    made = register(client, "cola", EAN13, UPCA)
    assert made.status_code == 201, made.text  # type: ignore[attr-defined]
    assert made.json()["barcodes"] == ["00036000291452", "04006381333931"]  # type: ignore[attr-defined]
    assert client.get("/products/cola").json()["barcodes"] == ["00036000291452", "04006381333931"]
    # The same code at another length is the same product.
    found = client.get("/products", params={"barcode": "0036000291452"}).json()
    assert [p["sku"] for p in found["items"]] == ["cola"] and found["total"] == 1
    assert client.get("/products", params={"barcode": EAN8}).json()["items"] == []
    taken = register(client, "fake-cola", "00" + UPCA)
    assert (taken.status_code, taken.json()) == (  # type: ignore[attr-defined]
        409,
        {"detail": "barcode 00036000291452 is held by product cola"},
    )
    assert client.get("/products/fake-cola").status_code == 404  # nothing written


SHAPE = "must be 8, 12, 13 or 14 digits (single spaces or dashes between them allowed)"


@pytest.mark.parametrize(
    ("code", "detail"),
    [
        ("4006381333932", "barcodes[0]: check digit of 4006381333932 must be 1"),
        ("40063813", "barcodes[0]: check digit of 40063813 must be 2"),
        ("12345", f"barcodes[0]: {SHAPE}"),
        ("40O6381333931", f"barcodes[0]: {SHAPE}"),
        ("4006381333931 4006381333931", f"barcodes[0]: {SHAPE}"),
    ],
)
def test_bad_codes_are_422_and_write_nothing(client: TestClient, code: str, detail: str) -> None:
    refused = register(client, "never", code)
    assert refused.status_code == 422  # type: ignore[attr-defined]
    assert refused.json()["detail"] == detail  # type: ignore[attr-defined]
    assert client.get("/products/never").status_code == 404


def test_codes_are_added_and_removed_later(client: TestClient) -> None:
    assert register(client, "milk").status_code == 201  # type: ignore[attr-defined]
    added = client.post("/products/milk/barcodes", data={"barcodes": [EAN8, "9638-5074"]})
    assert added.status_code == 200, added.text
    assert added.json()["barcodes"] == ["00000096385074"]
    held = client.post("/products/milk/barcodes", data={"barcodes": [EAN13]})
    assert held.status_code == 409 and "held by product cola" in held.json()["detail"]
    assert client.delete(f"/products/milk/barcodes/{EAN8}").status_code == 204
    assert client.get("/products/milk").json()["barcodes"] == []
    gone = client.delete(f"/products/milk/barcodes/{EAN8}")
    assert (gone.status_code, gone.json()) == (
        404,
        {"detail": "barcode not found: milk/00000096385074"},
    )
    # A deleted product's codes are free again.
    assert client.delete("/products/cola").status_code == 204
    assert register(client, "cola-2", EAN13).status_code == 201  # type: ignore[attr-defined]
