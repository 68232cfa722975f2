"""Error tables, in process: each bad input gets its 4xx and `{"detail": ...}` and writes
nothing, on SQLite and on PostgreSQL.

These check answers, not transport, so they run against `TestClient(create_app(settings))`
(the real app, lifespan and all, without uvicorn): one app per database for the whole module.
The same routes through a real server stay in test_api.py and test_catalogues.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.types import ALPHABET_RULE
from tests.api.test_api import KEY, OATGHURT
from tests.api.test_catalogues import classify, photos, register_products
from tests.image_factory import image_bytes, jpeg, png_bomb, truncated_jpeg
from tests.support.databases import backend_database
from tests.support.inprocess import in_process_client

METADATA_ERROR = "metadata must be a JSON object"
SKU_ERROR = f"sku: must be {ALPHABET_RULE}"
NAME_ERROR = (
    "name: must be 1-255 characters once leading and trailing whitespace is stripped; no NUL"
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """test_api.py's limits and keys, test_catalogues.py's box limit and products."""
    root = tmp_path_factory.mktemp(f"errors-{request.param}")
    with (
        backend_database(request.param) as url,
        in_process_client(
            root / "data",
            headers=KEY,
            database_url=url,
            api_keys="secret-1, secret-2",
            max_upload_bytes=3_000_000,
            max_image_pixels=5_000_000,
            max_boxes=3,
        ) as c,
    ):
        register_products(c)
        yield c


@pytest.mark.parametrize(
    ("fields", "files", "status", "detail"),
    [
        ({"sku": "bad sku!", "name": "x"}, "good", 422, SKU_ERROR),
        ({"sku": "x" * 65, "name": "x"}, "good", 422, SKU_ERROR),
        (
            {"sku": "ok", "name": "x", "metadata": "[1]"},
            "good",
            422,
            "metadata must be a JSON object",
        ),
        (
            {"sku": "ok", "name": "x", "metadata": "{"},
            "good",
            422,
            "metadata must be a JSON object",
        ),
        ({"sku": "ok", "name": "  "}, "good", 422, NAME_ERROR),
        ({"sku": "ok", "name": "a\x00b"}, "good", 422, NAME_ERROR),
        ({"sku": "ok", "name": "x" * 256}, "good", 422, NAME_ERROR),
        ({"sku": "bad sku!", "name": " "}, "good", 422, f"{SKU_ERROR}; {NAME_ERROR}"),
        ({"sku": "ok", "name": "x", "metadata": '{"a": NaN}'}, "good", 422, METADATA_ERROR),
        (
            {"sku": "ok", "name": "x", "metadata": "[" * 100_000},
            "good",
            422,
            "metadata: longer than 65536 characters",
        ),
        ({"sku": "ok"}, "good", 422, "name: Field required"),
        ({"sku": "ok", "name": "x"}, "none", 422, "images: Field required"),
        ({"sku": "ok", "name": "x"}, "text", 400, "images[1]: file is not a decodable image"),
        ({"sku": "ok", "name": "x"}, "truncated", 400, "images[1]: image is truncated or corrupt"),
        ({"sku": "ok", "name": "x"}, "bomb", 422, "images[1]: image has too many pixels"),
        ({"sku": "ok", "name": "x"}, "tiff", 415, "images[1]: unsupported image format: TIFF"),
    ],
)
def test_bad_registrations_are_refused_and_change_nothing(
    client: TestClient, fields: dict[str, str], files: str, status: int, detail: str
) -> None:
    good = ("a.jpg", OATGHURT.read_bytes(), "image/jpeg")
    second = {
        "good": good,
        "text": ("b.jpg", b"hello", "image/jpeg"),
        "truncated": ("b.jpg", truncated_jpeg(image_bytes("JPEG", (500, 400))), "image/jpeg"),
        "bomb": ("b.png", png_bomb(3000, 3000), "image/png"),
        "tiff": ("b.tif", image_bytes("TIFF"), "image/tiff"),
    }.get(files)
    upload = [] if files == "none" else [("images", good), ("images", second)]
    before = client.get("/products").json()["total"]
    response = client.post("/products", data=fields, files=upload)
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert client.get("/products").json()["total"] == before
    assert client.get(f"/products/{fields['sku']}").status_code in (404, 422)


def test_bad_scopes_are_clear_4xx(client: TestClient) -> None:
    query = photos("oatly-oat")[5]
    cases = [
        ({"catalogue": "store-9"}, 404, "catalogue not found: store-9"),
        (
            {"catalogue": "no/slash"},
            422,
            f"catalogue: must be {ALPHABET_RULE}",
        ),
        ({"filter": {"Brand": "Oatly"}}, 404, 'filter: no product has metadata key "Brand"'),
        ({"filter": "[1, 2]"}, 422, "filter must be a JSON object"),
        ({"filter": "{brand: Oatly}"}, 422, "filter must be a JSON object"),
        ({"filter": {"brand": {"a": 1}}}, 422, 'filter: "brand" must be a string, number, '),
        ({"filter": {"brand": []}}, 422, 'filter: "brand" must be a string, number, '),
    ]
    for fields, status, detail in cases:
        response = classify(client, query, **fields)
        assert response.status_code == status, (fields, response.text)
        assert response.json()["detail"].startswith(detail), response.text
    query_param = client.post("/classify?catalogue=store-9", files={"image": jpeg(query)})
    assert query_param.status_code == 404


def test_bad_options_name_the_field_and_the_rule(client: TestClient) -> None:
    """Form field or query parameter, each value sent is checked (app/api/types.py)."""
    query = photos("oatly-oat")[5]
    integer = "Input should be a valid integer, unable to parse string as an integer"
    cases = [  # (form fields, query parameters, detail)
        ({"top_k": "0"}, {}, "top_k must be between 1 and 100"),
        ({}, {"top_k": "101"}, "top_k must be between 1 and 100"),
        ({"top_k": "many"}, {}, f"top_k: {integer}"),
        ({"min_score": "1.5"}, {}, "min_score: must be between -1 and 1"),
        ({}, {"min_score": "nan"}, "min_score: must be between -1 and 1"),
        (
            {},
            {"catalogue": ""},
            f"catalogue: must be {ALPHABET_RULE}",
        ),
    ]
    for data, params, detail in cases:
        response = client.post("/classify", data=data, params=params, files={"image": jpeg(query)})
        assert (response.status_code, response.json()) == (422, {"detail": detail}), (data, params)


def test_bad_registration_fields_write_nothing(client: TestClient) -> None:
    before = client.get("/catalogues").json()
    for catalogues, detail in [
        (
            ["fine", "not fine"],
            f"catalogues: catalogue must be {ALPHABET_RULE}",
        ),
        ([f"c{i}" for i in range(65)], "catalogues: at most 64 per product"),
    ]:
        response = client.post(
            "/products",
            data={"sku": "never", "name": "Never", "catalogues": catalogues},
            files=[("images", jpeg(photos("arla-milk")[3]))],
        )
        assert (response.status_code, response.json()["detail"]) == (422, detail)
    assert client.get("/products/never").status_code == 404
    assert client.get("/catalogues").json() == before


def test_bad_boxes_are_422(client: TestClient) -> None:
    query = photos("trop-apple")[5]
    width, height = Image.open(query).size
    cases = [
        (f"[[0, 0, 10, 10], [0, 0, {width + 1}, 10]]", f"boxes[1]: outside the image ({width}x"),
        (f"[[0.5, 1, {width}, {height}]]", None),
        ("[[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]", "boxes: at most 3 boxes"),
        ("[[10, 0, 5, 10]]", "boxes[0]: need 0 <= x0 < x1 and 0 <= y0 < y1"),
        ("[[-1, 0, 5, 10]]", "boxes[0]: need 0 <= x0 < x1 and 0 <= y0 < y1"),
        ("[[0, 0, 5]]", "boxes[0]: must be [x0, y0, x1, y1], four numbers"),
        ('[[0, 0, 5, "9"]]', "boxes[0]: must be [x0, y0, x1, y1], four numbers"),
        # An integer too large for a float was a 500 (OverflowError), not a 422.
        ("[[0, 0, 1" + "0" * 400 + ", 5]]", "boxes: the integer 1000"),
        ("[[0, 0, 1e400, 5]]", "boxes: the number 1e400 does not fit a 64-bit float"),
        ("[[0, 0, 5, NaN]]", "boxes must be a JSON list of [x0, y0, x1, y1] lists"),
        ("[]", "boxes must be a JSON list of [x0, y0, x1, y1] lists"),
        ("[[0, 0, 5, 5]", "boxes must be a JSON list of [x0, y0, x1, y1] lists"),
    ]
    for boxes, detail in cases:
        response = client.post("/classify", data={"boxes": boxes}, files={"image": jpeg(query)})
        if detail is None:
            assert response.status_code == 200
            continue
        assert response.status_code == 422, (boxes, response.text)
        assert response.json()["detail"].startswith(detail), response.text
    # A bad photo is still the photo's error.
    broken = client.post(
        "/classify", data={"boxes": "[[0, 0, 1, 1]]"}, files={"image": ("x.jpg", b"nope")}
    )
    assert broken.json() == {"detail": "image: file is not a decodable image"}
