"""Through a real uvicorn process, on SQLite and PostgreSQL: catalogues, metadata
filters inside the search, boxes, reference images over HTTP, near-duplicates, similar."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from app.api.types import ALPHABET_RULE
from app.index.stored_vectors import as_stored
from app.index.vector_ids import vector_id
from app.runtime.index_sync import IndexSync
from tests.image_factory import jpeg
from tests.support.databases import backend_database
from tests.support.paths import GROCERY
from tests.support.servers import LiveServer, running_server, wait_for

TRAIN = GROCERY / "train/Packages"
PRODUCTS = {
    # sku: (folder, metadata, catalogues)
    "oatly-oat": ("Oat-Milk/Oatly-Oat-Milk", {"brand": "Oatly", "kind": "milk"}, ["store-1"]),
    "trop-apple": (
        "Juice/Tropicana-Apple-Juice",
        {"brand": "Tropicana", "kind": "juice", "litres": 1},
        ["store-1", "store-2"],
    ),
    "arla-milk": (
        "Milk/Arla-Standard-Milk",
        {"brand": "Arla", "kind": "milk", "organic": True},
        ["store-2"],
    ),
}


def photos(sku: str) -> list[Path]:
    return sorted((TRAIN / PRODUCTS[sku][0]).glob("*.jpg"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp(f"catalogues-{request.param}")
    with (
        backend_database(request.param) as url,
        running_server(root, database_url=url, max_boxes=3, batch_wait_ms=20) as live,
    ):
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        register_products(c)
        yield c


def register_products(client: httpx.Client) -> None:
    """PRODUCTS, two photos each, with their metadata and catalogues."""
    for sku, (_, metadata, catalogues) in PRODUCTS.items():
        response = client.post(
            "/products",
            data={
                "sku": sku,
                "name": sku.title(),
                "metadata": json.dumps(metadata),
                "catalogues": catalogues,
            },
            files=[("images", jpeg(p)) for p in photos(sku)[:2]],
        )
        assert response.status_code == 201, response.text
        assert response.json()["catalogues"] == sorted(catalogues)


def classify(client: httpx.Client, path: Path, **fields: object) -> httpx.Response:
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    return client.post("/classify", data=data, files={"image": jpeg(path)})


def skus(answer: dict) -> list[str]:
    return [m["sku"] for m in answer["matches"]]


def test_catalogues_are_listed_with_counts(client: httpx.Client) -> None:
    assert client.get("/catalogues").json() == {
        "items": [
            {"name": "store-1", "product_count": 2},
            {"name": "store-2", "product_count": 2},
        ]
    }
    assert client.get("/products/oatly-oat").json()["catalogues"] == ["store-1"]


def test_a_catalogue_search_sees_only_its_products(client: httpx.Client) -> None:
    query = photos("oatly-oat")[5]
    everything = classify(client, query, top_k=3).json()
    assert skus(everything)[0] == "oatly-oat" and len(everything["matches"]) == 3
    store2 = classify(client, query, top_k=3, catalogue="store-2").json()
    assert sorted(skus(store2)) == ["arla-milk", "trop-apple"]
    # The same scores as in the unrestricted search: restricted, not re-ranked.
    full = {m["sku"]: m["score"] for m in everything["matches"]}
    assert all(full[m["sku"]] == m["score"] for m in store2["matches"])
    as_query = client.post(
        "/classify?catalogue=store-2&top_k=3", files={"image": jpeg(query)}
    ).json()
    assert as_query["matches"] == store2["matches"]
    batch = client.post(
        "/classify/batch",
        data={"catalogue": "store-1"},
        files=[("images", jpeg(query)), ("images", jpeg(photos("arla-milk")[4]))],
    ).json()
    assert all(set(skus(r)) <= {"oatly-oat", "trop-apple"} for r in batch["results"])


def test_filters_match_exactly_lists_mean_any_keys_all(client: httpx.Client) -> None:
    query = photos("oatly-oat")[5]
    assert skus(classify(client, query, filter={"brand": "Arla"}).json()) == ["arla-milk"]
    either = classify(client, query, filter={"brand": ["Arla", "Tropicana"]}).json()
    assert sorted(skus(either)) == ["arla-milk", "trop-apple"]
    milk = classify(client, query, filter={"kind": "milk"}).json()
    assert sorted(skus(milk)) == ["arla-milk", "oatly-oat"]
    both = classify(client, query, filter={"kind": "milk", "brand": "Arla"}).json()
    assert skus(both) == ["arla-milk"]
    # JSON values, not their text: 1.0 is the number 1, "1" and true are not.
    assert skus(classify(client, query, filter={"litres": 1.0}).json()) == ["trop-apple"]
    assert skus(classify(client, query, filter={"litres": "1"}).json()) == []
    assert skus(classify(client, query, filter={"organic": True}).json()) == ["arla-milk"]
    assert skus(classify(client, query, filter={"organic": 1}).json()) == []
    nothing = classify(client, query, filter={"brand": "Valio"}).json()
    assert nothing["matches"] == [] and nothing["unknown"] is True
    scoped = classify(client, query, filter={"kind": "milk"}, catalogue="store-2").json()
    assert skus(scoped) == ["arla-milk"]
    query_param = client.post(
        "/classify", params={"filter": '{"brand": "Arla"}'}, files={"image": jpeg(query)}
    ).json()
    assert skus(query_param) == ["arla-milk"]


def test_catalogue_changes_apply_to_the_next_search(client: httpx.Client) -> None:
    query = photos("oatly-oat")[5]
    answer = client.put("/products/oatly-oat/catalogues", json=["store-2", "store-3", "store-2"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["catalogues"] == ["store-2", "store-3"]
    assert skus(classify(client, query, catalogue="store-3").json()) == ["oatly-oat"]
    assert "oatly-oat" not in skus(classify(client, query, catalogue="store-1").json())
    for body, status, detail in [
        (b"[not json", 422, None),
        (b'{"a": 1}', 422, None),
        (
            b'["ok", "bad name"]',
            422,
            f"catalogue must be {ALPHABET_RULE}",
        ),
        (b"\xefo", 400, "There was an error parsing the body"),
    ]:
        bad = client.put(
            "/products/oatly-oat/catalogues",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == status, bad.text
        assert detail is None or bad.json()["detail"] == detail
    missing = client.put("/products/nobody/catalogues", json=["store-1"])
    assert missing.json() == {"detail": "product not found: nobody"}
    assert client.get("/products/oatly-oat").json()["catalogues"] == ["store-2", "store-3"]
    client.put("/products/oatly-oat/catalogues", json=["store-1"])
    assert skus(classify(client, query, catalogue="store-1", top_k=1).json()) == ["oatly-oat"]
    assert classify(client, query, catalogue="store-3").status_code == 404  # now empty: gone


def test_boxes_classify_each_region_in_order(client: httpx.Client, tmp_path: Path) -> None:
    query = photos("trop-apple")[5]
    width, height = Image.open(query).size
    plain = classify(client, query, top_k=2).json()
    boxes = [[0, 0, width, height], [0, 0, width / 2, height / 2.5]]
    answer = classify(client, query, top_k=2, boxes=boxes, catalogue="store-1").json()
    assert list(answer) == ["regions", "model"] and len(answer["regions"]) == 2
    assert [r["box"] for r in answer["regions"]] == boxes
    # The whole image as a box is the plain classification (restricted to store-1).
    whole = answer["regions"][0]
    in_store = [m for m in plain["matches"] if m["sku"] in ("oatly-oat", "trop-apple")]
    assert whole["matches"][0] == in_store[0]
    assert "unknown" in whole and answer["model"] == plain["model"]
    assert set(plain) == {"matches", "unknown", "verdict", "model", "barcodes"}


def test_boxes_are_in_the_upright_images_pixels(client: httpx.Client) -> None:
    """A phone photo stored sideways with EXIF orientation 6 decodes 100 wide, 200 high."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (200, 100), "orange").save(buffer, format="JPEG", exif=exif)
    upload = {"image": ("sideways.jpg", buffer.getvalue(), "image/jpeg")}
    ok = client.post("/classify", data={"boxes": "[[0, 0, 100, 200]]"}, files=upload)
    assert ok.status_code == 200 and len(ok.json()["regions"]) == 1
    wide = client.post("/classify", data={"boxes": "[[0, 0, 200, 100]]"}, files=upload)
    assert wide.json() == {"detail": "boxes[0]: outside the image (100x200)"}


def test_reference_images_over_http(client: httpx.Client) -> None:
    product = client.get("/products/arla-milk").json()
    first = product["image_ids"][0]
    original = photos("arla-milk")[0].read_bytes()
    response = client.get(f"/products/arla-milk/images/{first}")
    assert response.status_code == 200 and response.content == original
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"].startswith("private, max-age=")
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    again = client.get(f"/products/arla-milk/images/{first}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    thumb = client.get(f"/products/arla-milk/images/{first}", params={"size": 64})
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.headers["etag"] != etag
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 64
    for path, status in [
        (f"/products/arla-milk/images/{first}?size=8", 422),
        (f"/products/arla-milk/images/{first}?size=4096", 422),
        (f"/products/oatly-oat/images/{first}", 404),  # another product's image
        ("/products/arla-milk/images/999999", 404),
        ("/products/arla-milk/images/0", 422),
    ]:
        assert client.get(path).status_code == status, path


def test_near_duplicates_are_reported_and_similar_lists_look_alikes(
    client: httpx.Client,
) -> None:
    # The same photo re-encoded: different bytes, nearly the same embedding.
    source = Image.open(photos("oatly-oat")[0])
    buffer = io.BytesIO()
    source.save(buffer, format="PNG")
    created = client.post(
        "/products",
        data={"sku": "oat-copy", "name": "Copy"},
        files=[
            ("images", ("copy.png", buffer.getvalue(), "image/png")),
            ("images", jpeg(photos("arla-milk")[6])),
        ],
    ).json()
    dupes = [(w["upload"], w["sku"]) for w in created["warnings"]]
    assert (0, "oatly-oat") in dupes
    assert all(w["score"] >= 0.9 for w in created["warnings"])
    oatly_ids = client.get("/products/oatly-oat").json()["image_ids"]
    assert next(w for w in created["warnings"] if w["upload"] == 0)["image_id"] in oatly_ids
    added = client.post(
        "/products/arla-milk/images", files=[("images", ("copy.png", buffer.getvalue()))]
    ).json()
    assert {w["sku"] for w in added["warnings"]} >= {"oatly-oat", "oat-copy"}
    similar = client.get("/products/oat-copy/similar", params={"limit": 2}).json()
    assert similar["similar"][0]["sku"] in ("oatly-oat", "arla-milk")
    assert similar["similar"][0]["score"] > 0.99 and len(similar["similar"]) == 2
    assert all(s["sku"] != "oat-copy" for s in similar["similar"])
    assert client.get("/products/nobody/similar").status_code == 404
    assert client.get("/products/oat-copy/similar?limit=0").status_code == 422
    client.delete("/products/oat-copy")


def test_filtered_search_returns_top_k_even_when_the_filter_keeps_few(tmp_path: Path) -> None:
    """Inside the index: the allowed vectors are the least similar ones, yet all come back."""
    shards = IndexSync.open("m", 16, tmp_path, session_factory=None)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    image_ids = np.arange(1, 2001, dtype=np.int64)
    shards.follower.apply_added(0, 1, vector_id(image_ids), vectors)
    shards.follower.apply_added(0, 2, vector_id(image_ids, 1), vectors)  # a derived view per image
    query = vectors[:1]
    order = np.argsort(-(vectors @ query[0]))
    allowed = image_ids[order[-20:]]  # 1% of the catalogue, the 20 worst matches
    scores, ids = shards.store.search(query, 10, allowed=allowed)
    assert set(ids[0]) <= set(allowed) and (ids[0] >= 0).all()
    # The index holds what SQL holds (float16, renormalised), so the scores are of those.
    expected = np.sort(as_stored(vectors[order[-20:]]) @ query[0])[::-1][:5]
    assert np.allclose(scores[0][::2], expected, atol=1e-5)  # each image and its view
    assert (shards.store.search(query, 5, allowed=np.array([], np.int64))[1] == -1).all()


def test_a_catalogue_change_on_one_replica_applies_on_the_next_search_of_another(
    live_server: Callable[..., LiveServer], make_db_url: Callable[[str], str], tmp_path: Path
) -> None:
    """The cached allowed ids are stamped with SQL state, so no sync interval is waited for."""
    url = make_db_url("postgresql")
    a = live_server(data_dir=tmp_path / "a", database_url=url)
    b = live_server(data_dir=tmp_path / "b", database_url=url)
    query = photos("oatly-oat")[5]
    with (
        httpx.Client(base_url=a.url, timeout=120) as on_a,
        httpx.Client(base_url=b.url, timeout=120) as on_b,
    ):
        for sku in ("oatly-oat", "arla-milk"):
            response = on_a.post(
                "/products",
                data={"sku": sku, "name": sku, "catalogues": ["shop"]},
                files=[("images", jpeg(photos(sku)[0]))],
            )
            assert response.status_code == 201, response.text
        vectors = on_a.get("/readyz").json()["index_vectors"]
        assert wait_for(lambda: on_b.get("/readyz").json()["index_vectors"] == vectors, 60)
        assert sorted(skus(classify(on_b, query, catalogue="shop").json())) == [
            "arla-milk",
            "oatly-oat",
        ]
        assert on_a.put("/products/oatly-oat/catalogues", json=[]).status_code == 200
        assert skus(classify(on_b, query, catalogue="shop").json()) == ["arla-milk"]
        on_a.put("/products/arla-milk/catalogues", json=["other"])
        assert classify(on_b, query, catalogue="shop").status_code == 404
