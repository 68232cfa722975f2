"""The HTTP contract through a real uvicorn process, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.image_factory import jpeg
from tests.support.databases import backend_database
from tests.support.paths import GROCERY
from tests.support.servers import LiveServer, running_server

KEY = {"X-API-Key": "secret-2"}
ICONIC = GROCERY / "iconic-images-and-descriptions"
OATGHURT = ICONIC / "Packages/Oatghurt/Oatly-Natural-Oatghurt/Oatly-Natural-Oatghurt_Iconic.jpg"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp(f"api-{request.param}")
    with (
        backend_database(request.param) as url,
        running_server(
            root,
            database_url=url,
            api_keys="secret-1, secret-2",
            max_upload_bytes=3_000_000,
            max_image_pixels=5_000_000,
            batch_wait_ms=40,
            unknown_threshold=0.5,
            # The offline backbone has no calibrated tiers: these make `confident` reachable.
            confident_score=0.6,
            confident_margin=0.02,
        ) as live,
    ):
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=KEY, timeout=60) as c:
        yield c


def register(client: httpx.Client, sku: str, paths: list[Path], **fields: str) -> httpx.Response:
    return client.post(
        "/products",
        data={"sku": sku, "name": fields.pop("name", sku), **fields},
        files=[("images", jpeg(p)) for p in paths],
    )


def test_probes_are_open_and_everything_else_needs_a_key(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        ready = anonymous.get("/readyz").json()
        assert ready["status"] == "ready" and ready["model"] == "efficientnet-lite0:in1k"
        assert "retailklip_http_requests_total" in anonymous.get("/metrics").text
        for method, path in [("GET", "/products"), ("POST", "/classify"), ("POST", "/products")]:
            response = anonymous.request(method, path)
            assert response.status_code == 401
            assert response.json() == {"detail": "missing or invalid API key"}
        wrong = anonymous.get("/products", headers={"X-API-Key": "secret-3"})
        assert wrong.status_code == 401


def test_product_lifecycle(client: httpx.Client) -> None:
    photos = sorted((GROCERY / "train/Fruit/Apple/Granny-Smith").glob("*.jpg"))[:2]
    iconic = ICONIC / "Fruit/Apple/Granny-Smith/Granny-Smith_Iconic.jpg"
    created = register(
        client,
        "granny-1",
        [iconic, iconic],
        name="Granny Smith",
        metadata=json.dumps({"brand": "Orchard", "plu": 4017}),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["image_count"] == 1 and body["metadata"] == {"brand": "Orchard", "plu": 4017}
    assert body["created_at"].endswith(("Z", "+00:00"))
    added = client.post(
        "/products/granny-1/images", files=[("images", jpeg(p)) for p in [*photos, iconic]]
    )
    assert added.status_code == 201
    assert added.json()["added"] == 2 and added.json()["image_ids"][2] == body["image_ids"][0]
    product = client.get("/products/granny-1").json()
    assert product["created_at"] == body["created_at"]
    assert product["image_count"] == 3 and product["name"] == "Granny Smith"
    assert register(client, "granny-1", [iconic]).json() == {
        "detail": "product already exists: granny-1"
    }
    removed = client.delete(f"/products/granny-1/images/{product['image_ids'][0]}")
    assert removed.status_code == 204
    assert client.get("/products/granny-1").json()["image_count"] == 2
    assert client.delete("/products/granny-1").status_code == 204
    missing = client.get("/products/granny-1")
    assert missing.status_code == 404 and missing.json() == {
        "detail": "product not found: granny-1"
    }
    assert client.delete("/products/granny-1/images/1").status_code == 404


def test_listing_pages(client: httpx.Client) -> None:
    for i in range(3):
        assert register(client, f"page-{i}", [OATGHURT]).status_code == 201
    total = client.get("/products").json()["total"]
    page = client.get("/products", params={"limit": 2, "offset": total - 3}).json()
    assert [p["sku"] for p in page["items"]] == ["page-0", "page-1"]
    assert page["limit"] == 2 and page["total"] == total
    assert client.get("/products", params={"limit": 0}).status_code == 422
    assert client.get("/products", params={"offset": 2**63}).status_code == 422
    assert client.delete(f"/products/page-0/images/{2**63}").status_code == 422


def test_oversized_bodies_get_413(client: httpx.Client, server: LiveServer) -> None:
    big = b"\xff\xd8" + b"0" * 3_100_000
    response = client.post(
        "/products",
        data={"sku": "big", "name": "x"},
        files=[("images", ("big.jpg", big, "image/jpeg"))],
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "request body too large (limit 3000000 bytes)"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap must hold while streaming
        yield (
            b'--zz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n"
        )
        for _ in range(40):
            yield b"x" * 100_000

    streamed = client.post(
        "/classify", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=zz"}
    )
    assert streamed.status_code == 413
    assert client.get("/products/big").status_code == 404


def test_classify_returns_distinct_skus_best_first(client: httpx.Client) -> None:
    classes = {
        "banana": ICONIC / "Fruit/Banana/Banana_Iconic.jpg",
        "lemon": ICONIC / "Fruit/Lemon/Lemon_Iconic.jpg",
        "granny": ICONIC / "Fruit/Apple/Granny-Smith/Granny-Smith_Iconic.jpg",
    }
    for sku, path in classes.items():
        extra = sorted(
            (GROCERY / "train/Fruit" / path.parent.relative_to(ICONIC / "Fruit")).glob("*.jpg")
        )[:3]
        assert register(client, f"cls-{sku}", [path, *extra]).status_code == 201
    query = sorted((GROCERY / "test/Fruit/Banana").glob("*.jpg"))[0]
    answer = client.post("/classify", files={"image": jpeg(query)}, data={"top_k": "3"}).json()
    skus = [m["sku"] for m in answer["matches"]]
    assert skus[0] == "cls-banana" and len(skus) == len(set(skus)) == 3
    scores = [m["score"] for m in answer["matches"]]
    assert scores == sorted(scores, reverse=True)
    assert answer["model"] == "efficientnet-lite0:in1k"
    assert answer["unknown"] is (scores[0] < 0.5)
    confident = scores[0] >= 0.6 and scores[0] - scores[1] >= 0.02
    tier = "unknown" if answer["unknown"] else "confident" if confident else "ambiguous"
    assert answer["verdict"] == tier
    strict = client.post("/classify", files={"image": jpeg(query)}, params={"min_score": 0.99})
    assert strict.json()["unknown"] is True and strict.json()["verdict"] == "unknown"
    lenient = client.post("/classify", files={"image": jpeg(query)}, data={"min_score": "-1"})
    assert lenient.json()["unknown"] is False
    one = client.post("/classify", files={"image": jpeg(query)}, params={"top_k": 1}).json()
    assert len(one["matches"]) == 1
    assert one["verdict"] == tier  # the margin is to the runner-up, shown or not
    bad_k = client.post("/classify", files={"image": jpeg(query)}, data={"top_k": "0"})
    assert bad_k.json() == {"detail": "top_k must be between 1 and 100"}
    not_image = client.post("/classify", files={"image": ("x.jpg", b"nope", "image/jpeg")})
    assert not_image.json() == {"detail": "image: file is not a decodable image"}

    # A batch answers exactly what one call per image answers, in upload order.
    queries = [
        sorted((GROCERY / "test/Fruit/Lemon").glob("*.jpg"))[0],
        query,
        sorted((GROCERY / "test/Fruit/Apple/Granny-Smith").glob("*.jpg"))[0],
    ]
    batch = client.post("/classify/batch", files=[("images", jpeg(q)) for q in queries]).json()
    singles = [client.post("/classify", files={"image": jpeg(q)}).json() for q in queries]
    for batched, single in zip(batch["results"], singles, strict=True):
        assert [m["sku"] for m in batched["matches"]] == [m["sku"] for m in single["matches"]]
        for a, b in zip(batched["matches"], single["matches"], strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    assert batch["results"][1]["matches"][0]["sku"] == "cls-banana"


def test_an_image_alone_answers_as_with_explicit_options(client: httpx.Client) -> None:
    """`POST /classify` with just `image` answers as with the defaults spelled out, in the
    form or in the query, and faults are worded the same either way, through a real server."""
    assert (
        register(client, "short-kiwi", [ICONIC / "Fruit/Kiwi/Kiwi_Iconic.jpg"]).status_code == 201
    )
    assert (
        register(client, "short-pear", [ICONIC / "Fruit/Pear/Anjou/Anjou_Iconic.jpg"]).status_code
        == 201
    )
    query = sorted((GROCERY / "test/Fruit/Kiwi").glob("*.jpg"))[0]
    shortcut = client.post("/classify", files={"image": jpeg(query)})
    declared = client.post("/classify", files={"image": jpeg(query)}, data={"top_k": "5"})
    by_query = client.post("/classify", files={"image": jpeg(query)}, params={"top_k": 5})
    assert shortcut.status_code == declared.status_code == by_query.status_code == 200
    assert shortcut.json() == declared.json() == by_query.json()
    assert shortcut.headers["content-type"] == declared.headers["content-type"]
    assert len(shortcut.json()["matches"]) >= 2  # the default top_k (5), not fewer

    # Faults answer as before, shortcut or not.
    for extra in ({}, {"top_k": "5"}):
        empty = client.post("/classify", files={"image": ("x.jpg", b"", "image/jpeg")}, data=extra)
        assert empty.status_code == 400 and empty.json()["detail"].startswith("image: ")
    as_text = client.post("/classify", data={"image": "not a file"})
    assert as_text.status_code == 422 and as_text.json()["detail"].startswith("image: ")
    twice = client.post("/classify", files=[("image", jpeg(query)), ("image", jpeg(query))])
    assert twice.status_code == 200 and twice.json() == shortcut.json()  # the last one, as declared
    broken = client.post(
        "/classify",
        content=b"--b\r\nContent-Disposition: form-data; name=image; filename=x\r\n\r\nabc",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert broken.status_code in (400, 422), broken.text
    for sku in ("short-kiwi", "short-pear"):
        assert client.delete(f"/products/{sku}").status_code == 204


def test_concurrent_classify_calls_share_forward_passes(
    client: httpx.Client, server: LiveServer
) -> None:
    def batches() -> tuple[float, float]:
        text = client.get("/metrics").text
        count = float(re.search(r"retailklip_encoder_batch_size_count (\S+)", text).group(1))
        total = float(re.search(r"retailklip_encoder_batch_size_sum (\S+)", text).group(1))
        return count, total

    assert register(client, "conc", [OATGHURT]).status_code == 201
    photos = sorted((GROCERY / "test/Packages/Oatghurt").rglob("*.jpg"))[:16]
    count0, total0 = batches()
    with ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda p: client.post("/classify", files={"image": jpeg(p)}), photos)
        )
    assert all(a.status_code == 200 for a in answers)
    count1, total1 = batches()
    assert total1 - total0 == 16
    assert count1 - count0 < 16  # some forward passes carried several requests
