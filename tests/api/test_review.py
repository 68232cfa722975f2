"""The review queue through a real uvicorn process, on SQLite and PostgreSQL: what is kept and
when, confirming an item makes it a reference that classifies as itself at once, rejecting
leaves nothing behind, the bounds drop the oldest, and with review off nothing is kept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.catalogue.review_queue import QueuedPhoto, ReviewQueue
from app.db.migrate import upgrade_to_head
from app.db.session import make_engine, make_session_factory
from app.db.tables import ReviewItem
from app.storage.blobs import FileBlobStore
from tests.image_factory import jpeg
from tests.support.databases import backend_database
from tests.support.paths import GROCERY
from tests.support.servers import LiveServer, running_server

ICONIC = GROCERY / "iconic-images-and-descriptions"
PRODUCTS = {
    "banana": ICONIC / "Fruit/Banana/Banana_Iconic.jpg",
    "lemon": ICONIC / "Fruit/Lemon/Lemon_Iconic.jpg",
}
SHELF = sorted((GROCERY / "test/Fruit/Banana").glob("*.jpg"))
GRANNY = sorted((GROCERY / "test/Fruit/Apple/Granny-Smith").glob("*.jpg"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp(f"review-{request.param}")
    with (
        backend_database(request.param) as url,
        running_server(root, database_url=url, review="ambiguous", review_max_items=3) as live,
    ):
        with httpx.Client(base_url=live.url, timeout=60) as client:
            for sku, path in PRODUCTS.items():
                response = client.post(
                    "/products", data={"sku": sku, "name": sku}, files=[("images", jpeg(path))]
                )
                assert response.status_code == 201
        yield live


def queue(client: httpx.Client, expect: int) -> list[dict]:
    """The queue once it holds `expect` items (kept after the answer went out)."""
    deadline = time.monotonic() + 20
    while True:
        page = client.get("/review").json()
        if page["total"] == expect or time.monotonic() > deadline:
            assert page["total"] == expect, page
            return page["items"]
        time.sleep(0.05)


def test_an_uncertain_answer_is_kept_and_a_confirmed_item_becomes_a_reference(
    server: LiveServer,
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.delete("/review")
        photo = SHELF[0]
        answer = client.post("/classify", files={"image": jpeg(photo)}).json()
        # The offline backbone carries no calibrated tiers: nothing it says is confident.
        assert answer["verdict"] in ("ambiguous", "unknown")
        [item] = queue(client, 1)
        assert item["verdict"] == answer["verdict"] and item["model"] == answer["model"]
        assert [c["sku"] for c in item["candidates"]] == [m["sku"] for m in answer["matches"]][:3]
        kept = client.get(f"/review/{item['id']}/photo")
        assert kept.status_code == 200 and kept.content == photo.read_bytes()
        assert kept.headers["content-type"] == "image/jpeg"
        # A shelf photo may show people: kept by no cache; served as what it is, never sniffed.
        assert kept.headers["cache-control"] == "no-store"
        assert kept.headers["x-content-type-options"] == "nosniff"

        confirmed = client.post(f"/review/{item['id']}/confirm", data={"sku": "banana"})
        assert confirmed.status_code == 201, confirmed.text
        assert confirmed.json()["sku"] == "banana" and confirmed.json()["added"] == 1
        assert client.get("/review").json()["total"] == 0
        # At once, on this replica: the shelf photo is now banana's own reference.
        again = client.post("/classify", files={"image": jpeg(photo)}, data={"top_k": "1"}).json()
        assert again["matches"][0]["sku"] == "banana"
        assert again["matches"][0]["score"] == pytest.approx(1.0, abs=1e-3)
        assert again["matches"][0]["image_id"] in confirmed.json()["image_ids"]

        assert client.post("/review/99999/confirm", data={"sku": "banana"}).status_code == 404
        queue(client, 1)  # that answer was not confident either
        assert client.delete("/review").status_code == 204
        client.post("/classify", files={"image": jpeg(SHELF[1])})
        [other] = queue(client, 1)
        missing = client.post(f"/review/{other['id']}/confirm", data={"sku": "nope"})
        assert missing.status_code == 404  # no such product: the item stays
        assert client.get("/review").json()["total"] == 1


def test_a_rejected_item_leaves_nothing_behind(server: LiveServer) -> None:
    photos = Path(server.env["RETAILKLIP_DATA_DIR"]) / "review"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.delete("/review")
        assert not any(p.is_file() for p in photos.rglob("*"))
        client.post("/classify", files={"image": jpeg(GRANNY[0])})
        [item] = queue(client, 1)
        assert sum(p.is_file() for p in photos.rglob("*")) == 1
        needs = client.get("/review/needs").json()["items"]
        top = item["candidates"][0]["sku"]
        assert [n["sku"] for n in needs] == [top] and needs[0]["uncertain"] == 1
        others = set(PRODUCTS) - {top}
        assert needs[0]["look_alike"]["sku"] in others  # two products: the other one
        bad = client.post(f"/review/{item['id']}/reject", data={"reason": "maybe"})
        assert bad.status_code == 422 and client.get("/review").json()["total"] == 1
        gone = client.post(f"/review/{item['id']}/reject", data={"reason": "not_in_catalogue"})
        assert gone.status_code == 204
        assert client.get("/review").json()["total"] == 0
        assert not any(p.is_file() for p in photos.rglob("*"))
        assert client.get(f"/review/{item['id']}/photo").status_code == 404
        again = client.post(f"/review/{item['id']}/reject", data={"reason": "not_a_product"})
        assert again.status_code == 404


def test_the_queue_keeps_the_newest_within_its_count(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.delete("/review")
        seen: list[int] = []  # item ids in the order they were kept
        for photo in GRANNY[1:5]:  # four photos, room for three
            client.post("/classify", files={"image": jpeg(photo)})
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                new = [
                    i["id"] for i in client.get("/review").json()["items"] if i["id"] not in seen
                ]
                if new:
                    seen += new
                    break
                time.sleep(0.05)
        items = client.get("/review").json()["items"]
        assert len(seen) == 4 and {i["id"] for i in items} == set(seen[1:])  # the oldest went
        margins = [i["margin"] for i in items]
        assert margins == sorted(margins)  # most uncertain first
        client.post("/classify", files={"image": jpeg(GRANNY[4])})  # the same photo again
        time.sleep(0.5)
        assert client.get("/review").json()["total"] == 3  # queued once


def test_with_review_off_nothing_is_kept(tmp_path: Path) -> None:
    with (
        running_server(tmp_path) as live,
        httpx.Client(base_url=live.url, timeout=60) as client,
    ):
        client.post("/products", data={"sku": "b", "name": "B"}, files=[("images", jpeg(SHELF[0]))])
        assert client.post("/classify", files={"image": jpeg(SHELF[2])}).status_code == 200
        time.sleep(0.5)
        page = client.get("/review").json()
        assert page["mode"] == "off" and page["total"] == 0
        assert not (Path(live.env["RETAILKLIP_DATA_DIR"]) / "review").exists()


def test_items_older_than_the_age_limit_are_dropped(db_url: str, tmp_path: Path) -> None:
    upgrade_to_head(db_url)
    factory = make_session_factory(make_engine(db_url))
    photos = FileBlobStore(tmp_path / "review")
    old = ReviewQueue(factory, photos, max_items=10, max_age_s=0.2)

    def photo(tag: str) -> QueuedPhoto:
        return QueuedPhoto(tag.encode(), "m", "ambiguous", 0.7, 0.01, [])

    assert old.add(photo("a")) is not None
    assert old.add(photo("a")) is None  # the same bytes are queued once
    time.sleep(0.3)
    assert old.add(photo("b")) is not None  # adding drops what is past the age limit
    items, total = old.page(10, 0)
    assert total == 1 and old.photo(items[0].id) == b"b"
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(ReviewItem)) == 1
    assert old.purge() == 1 and old.page(10, 0)[1] == 0
    assert not any(p.is_file() for p in (tmp_path / "review").rglob("*"))
