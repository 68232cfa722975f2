"""POST /shelf in process, on SQLite and PostgreSQL: a shelf built from real product photos in
known rows (so every answer is known), the same shelf stored turned with an EXIF orientation,
the planogram and must-have checks, facings per metadata value, bad JSON fields refused with
nothing changed, the detector's absence said clearly, and the route's role."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.image_factory import jpeg
from tests.support.databases import backend_database
from tests.support.inprocess import in_process_client
from tests.support.paths import GROCERY

ICONIC = GROCERY / "iconic-images-and-descriptions"
PRODUCTS = {
    "oatly-oat": ("Packages/Oat-Milk/Oatly-Oat-Milk", "Oatly"),
    "arla-milk": ("Packages/Milk/Arla-Standard-Milk", "Arla"),
    "trop-apple": ("Packages/Juice/Tropicana-Apple-Juice", "Tropicana"),
    "arla-yog": ("Packages/Yoghurt/Arla-Mild-Vanilla-Yoghurt", "Arla"),
}
FACE = 200  # px: each facing's square on the shelf photo
# Two shelves; a gap of two facings' width on the bottom one, after its second facing.
LAYOUT = [
    ["oatly-oat", "oatly-oat", "arla-milk", "trop-apple"],
    ["trop-apple", "arla-yog", None, None, "arla-yog"],
]
KEY = {"X-API-Key": "edit-key"}


def iconic(sku: str) -> Image.Image:
    folder = ICONIC / PRODUCTS[sku][0]
    return Image.open(next(folder.glob("*_Iconic.jpg"))).convert("RGB")


def shelf_photo() -> tuple[Image.Image, list[list[int]], list[str]]:
    """The layout drawn on a grey wall: the photo, its boxes and their SKUs (row by row)."""
    canvas = Image.new("RGB", (FACE * 6, FACE * 2 + 40), (120, 120, 120))
    boxes, skus = [], []
    for r, row in enumerate(LAYOUT):
        for p, sku in enumerate(row):
            if sku is None:
                continue
            x, y = 20 + p * FACE, 20 + r * FACE
            canvas.paste(iconic(sku).resize((FACE - 8, FACE - 8)), (x + 4, y + 4))
            boxes.append([x + 4, y + 4, x + FACE - 4, y + FACE - 4])
            skus.append(sku)
    return canvas, boxes, skus


def encoded(image: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **save)
    return buffer.getvalue()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp(f"shelf-{request.param}")
    with (
        backend_database(request.param) as url,
        in_process_client(
            root / "data",
            headers=KEY,
            database_url=url,
            api_keys="edit-key:edit, lane-key:classify",
            detector="off",
        ) as c,
    ):
        for sku, (folder, brand) in PRODUCTS.items():
            made = c.post(
                "/products",
                data={"sku": sku, "name": sku, "metadata": json.dumps({"brand": brand})},
                files=[("images", jpeg(next((ICONIC / folder).glob("*_Iconic.jpg"))))],
            )
            assert made.status_code == 201, made.text
        yield c


def form(fields: dict[str, object]) -> dict[str, object]:
    """JSON fields as JSON text; `must_have` as a repeated field."""
    return {
        k: v if isinstance(v, str) or k == "must_have" else json.dumps(v) for k, v in fields.items()
    }


def audit(client: TestClient, data: bytes, **fields: object) -> dict:
    answer = client.post(
        "/shelf", data=form(fields), files={"image": ("shelf.jpg", data, "image/jpeg")}
    )
    assert answer.status_code == 200, answer.text
    report: dict = answer.json()
    return report


def test_a_shelf_with_its_boxes_is_named_placed_counted_and_gapped(client: TestClient) -> None:
    photo, boxes, skus = shelf_photo()
    report = audit(client, encoded(photo), boxes=boxes, group_by="brand")
    regions = report["regions"]
    assert [r["box"] for r in regions] == boxes  # as sent
    assert [r["matches"][0]["sku"] for r in regions] == skus
    assert [(r["shelf"], r["position"]) for r in regions] == [
        (0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2),
    ]  # fmt: skip
    assert all(r["detection"] is None for r in regions) and report["detector"] is None
    assert [s["facings"] for s in report["shelves"]] == [4, 3]
    assert report["shelves"][1]["regions"] == [4, 5, 6]
    facings = {f["sku"]: f for f in report["facings"]}
    assert {sku: f["count"] for sku, f in facings.items()} == {
        "oatly-oat": 2, "trop-apple": 2, "arla-yog": 2, "arla-milk": 1,
    }  # fmt: skip
    assert facings["oatly-oat"]["share"] == round(2 / 7, 4)
    assert facings["oatly-oat"]["name"] == "oatly-oat"
    groups = {g["value"]: g["count"] for g in report["groups"]}
    assert groups == {"Arla": 3, "Oatly": 2, "Tropicana": 2}
    [gap] = report["gaps"]
    assert (gap["shelf"], gap["after"]) == (1, 1)
    assert gap["width"] == pytest.approx(2 * FACE + 8)
    assert report["planogram"] is None and report["missing"] is None


def test_an_exif_turned_photo_answers_in_upright_pixels(client: TestClient) -> None:
    """The same shelf stored turned on its side, with EXIF orientation 6 ("turn right to
    view"): the boxes are given in the upright photo's pixels and mean the same facings."""
    photo, boxes, skus = shelf_photo()
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = photo.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    report = audit(client, encoded(stored, exif=exif), boxes=boxes)
    assert [r["matches"][0]["sku"] for r in report["regions"]] == skus
    assert [s["facings"] for s in report["shelves"]] == [4, 3]


def test_planogram_and_must_have(client: TestClient) -> None:
    photo, boxes, _ = shelf_photo()
    data = encoded(photo)
    own = {
        "shelves": [
            [{"sku": "oatly-oat", "facings": 2}, {"sku": "arla-milk"}, {"sku": "trop-apple"}],
            [{"sku": "trop-apple"}, {"sku": "arla-yog", "facings": 2}],
        ]
    }
    report = audit(client, data, boxes=boxes, planogram=own, must_have=["arla-milk", "kefir"])
    assert report["planogram"]["score"] == 1.0 and report["planogram"]["unplanned"] == []
    assert report["missing"] == ["kefir"]
    # Two products swapped and one removed from the plan's point of view.
    changed = {
        "shelves": [
            [{"sku": "oatly-oat", "facings": 2}, {"sku": "trop-apple"}, {"sku": "arla-milk"}],
            [{"sku": "trop-apple"}, {"sku": "arla-yog", "facings": 2}, {"sku": "kefir"}],
        ]
    }
    check = audit(client, data, boxes=boxes, planogram=changed)["planogram"]
    wrong = [
        (p["shelf"], p["position"], p["expected"], p["found"])
        for p in check["positions"]
        if p["status"] != "ok"
    ]
    assert wrong == [
        (0, 2, "trop-apple", "arla-milk"),
        (0, 3, "arla-milk", "trop-apple"),
        (1, 3, "kefir", None),
    ]
    assert [p["status"] for p in check["positions"] if p["expected"] == "kefir"] == ["missing"]
    assert check["score"] == 5 / 8


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"planogram": "[1]"}, 'planogram must be {"shelves": [[{"sku": ..., "facings": n}'),
        ({"planogram": {"shelves": [[{"sku": "a", "facings": 0}]]}}, "planogram: shelves[0][0]"),
        ({"planogram": {"shelves": [[{"sku": "a b"}]]}}, "planogram: shelves[0][0].sku must be"),
        ({"planogram": '{"shelves": [], "shelves": []}'}, "planogram: the key"),
        ({"must_have": ["fine", "not fine"]}, "must_have[1]: must be 1-64 characters"),
        ({"group_by": "k" * 65}, "group_by:"),
    ],
)
def test_malformed_checks_are_422_naming_the_field(
    client: TestClient, fields: dict[str, object], detail: str
) -> None:
    photo, boxes, _ = shelf_photo()
    before = client.get("/products").json()["total"]
    answer = client.post(
        "/shelf",
        data={"boxes": json.dumps(boxes), **form(fields)},
        files={"image": ("shelf.jpg", encoded(photo), "image/jpeg")},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(detail), answer.text
    assert client.get("/products").json()["total"] == before


def test_without_boxes_and_without_a_detector_the_answer_says_so(client: TestClient) -> None:
    photo, _, _ = shelf_photo()
    answer = client.post("/shelf", files={"image": ("shelf.jpg", encoded(photo), "image/jpeg")})
    assert answer.status_code == 422
    assert answer.json()["detail"] == (
        "boxes: required, this service has no product detector (RETAILKLIP_DETECTOR)"
    )
    assert client.get("/readyz").json()["detector"] is None


def test_a_classify_key_may_audit_a_shelf(client: TestClient) -> None:
    photo, boxes, _ = shelf_photo()
    answer = client.post(
        "/shelf",
        headers={"X-API-Key": "lane-key"},
        data={"boxes": json.dumps(boxes)},
        files={"image": ("shelf.jpg", encoded(photo), "image/jpeg")},
    )
    assert answer.status_code == 200, answer.text
    role = client.get("/openapi.json").json()["paths"]["/shelf"]["post"]["x-required-role"]
    assert role == "classify"
