"""A Python client generated from the committed OpenAPI document (openapi-python-client, as a
new user would make one) drives a live server: register products, classify a photo's regions
with `boxes`, audit a shelf with a planogram and a must-have list. The document and the server
must agree on how every field travels (JSON text, repeated fields, JSON parts), or these calls
fail.

The generator leaves out the image responses (their five `image/*` types): the README says to
fetch those with the client's own httpx client.
"""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from tests.support.paths import GROCERY, REPO
from tests.support.servers import LiveServer, running_server

KEY = "generated-client-key"
ICONIC = GROCERY / "iconic-images-and-descriptions"
PRODUCTS = {
    "trop-apple": ICONIC / "Packages/Juice/Tropicana-Apple-Juice/Tropicana-Apple-Juice_Iconic.jpg",
    "banana": ICONIC / "Fruit/Banana/Banana_Iconic.jpg",
}


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The client generated from docs/openapi.json, importable as `rk_client`."""
    root = tmp_path_factory.mktemp("generated")
    config = root / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run over the generated code
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("openapi-python-client")),
            "generate",
            "--path",
            str(REPO / "docs/openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(root / "rk_client"),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(root))
    try:
        yield "rk_client"
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "rk_client" or m.startswith("rk_client.")]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"rk_client.{name}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("generated-server")
    with running_server(root, api_keys=f"{KEY}:edit", detector="off") as live:
        yield live


def upload(types: ModuleType, data: bytes, name: str) -> Any:
    return types.File(payload=io.BytesIO(data), file_name=name, mime_type="image/jpeg")


def two_products() -> tuple[bytes, list[list[int]]]:
    """The two products side by side, and their boxes."""
    canvas = Image.new("RGB", (600, 300), "white")
    for i, path in enumerate(PRODUCTS.values()):
        canvas.paste(Image.open(path).convert("RGB").resize((280, 280)), (10 + 300 * i, 10))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue(), [[10, 10, 290, 290], [310, 10, 590, 290]]


def test_a_generated_client_registers_classifies_boxes_and_audits_a_shelf(
    client_package: str, server: LiveServer
) -> None:
    types = module("types")
    models = module("models")
    client = module("client").AuthenticatedClient(
        base_url=server.url, token=KEY, prefix="", auth_header_name="X-API-Key"
    )
    create = module("api.products.create_product")
    for sku, path in PRODUCTS.items():
        body = models.BodyCreateProduct(
            sku=sku,
            name=sku,
            images=[upload(types, path.read_bytes(), path.name)],
            metadata=models.BodyCreateProductMetadata.from_dict({"kind": "test"}),
        )
        made = create.sync_detailed(client=client, body=body)
        assert made.status_code == 201, made.content

    photo, boxes = two_products()
    classify = module("api.classify.classify")
    answer = classify.sync_detailed(
        client=client,
        body=models.BodyClassify(image=upload(types, photo, "two.jpg"), boxes=json.dumps(boxes)),
    )
    assert answer.status_code == 200, answer.content
    regions = json.loads(answer.content)["regions"]
    assert [r["matches"][0]["sku"] for r in regions] == list(PRODUCTS)

    audit = module("api.shelf.audit_shelf")
    plan = {"shelves": [[{"sku": "trop-apple", "facings": 1}, {"sku": "banana", "facings": 1}]]}
    body = models.BodyAuditShelf(
        image=upload(types, photo, "two.jpg"),
        boxes=json.dumps(boxes),
        planogram=models.BodyAuditShelfPlanogram.from_dict(plan),
        must_have=["banana", "kefir"],
    )
    report = audit.sync_detailed(client=client, body=body)
    assert report.status_code == 200, report.content
    parsed = report.parsed  # the generated model of the answer
    assert parsed.planogram.score == 1.0
    assert parsed.missing == ["kefir"]
    assert [f.sku for f in parsed.facings] == sorted(PRODUCTS)
    # Image bytes: the generated client omits image responses; its httpx client fetches them.
    product = json.loads(
        module("api.products.get_product").sync_detailed(client=client, sku="banana").content
    )
    image = client.get_httpx_client().get(f"/products/banana/images/{product['image_ids'][0]}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
