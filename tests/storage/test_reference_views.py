"""Derived reference vectors (degraded views): searched as their image, never counted or listed
as images, gone with their image and product, rebuilt from SQL and from shard files (SQLite and
PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from app.catalogue.products import NewImage
from app.db.tables import Embedding, ReferenceImage
from app.encoder.views import MAX_VIEW_CODE, VIEWS, degraded_views, parse_views, view_code
from app.index import vector_ids
from app.index.vector_ids import all_vector_ids, image_of, vector_id
from app.storage.blobs import sha256_hex
from tests.storage.test_storage import count, make_catalogue, unit
from tests.support.replicas import Replica

CODES = (view_code("thumb48"), view_code("blur"))


def with_views(n: int, tag: str) -> list[NewImage]:
    vectors = unit(n * (1 + len(CODES)))
    out = []
    for i in range(n):
        data = f"{tag}-{i}".encode()
        own, views = vectors[i * 3], vectors[i * 3 + 1 : i * 3 + 3]
        out.append(NewImage(data, sha256_hex(data), "JPEG", 10, 10, own, views, CODES))
    return out


def search_one(catalogue: Replica, vector: np.ndarray) -> tuple[float, int]:
    scores, ids = catalogue.shards.store.search(vector[None].astype(np.float32), 1)
    return float(scores[0, 0]), int(ids[0, 0])


def test_views_are_searched_as_their_image_and_never_counted(db_url: str, tmp_path: Path) -> None:
    catalogue = make_catalogue(db_url, tmp_path)
    images = with_views(2, "a")
    product = catalogue.create_product("p", "P", {}, images)
    assert len(product.images) == 2  # the API's image count: views are not images
    assert count(catalogue, ReferenceImage) == 2 and count(catalogue, Embedding) == 6
    assert catalogue.shards.size == 6
    with catalogue.session_factory() as session:
        signatures = session.scalars(select(Embedding.views).where(Embedding.code == 0)).all()
    assert signatures == ["1,3", "1,3"]
    # A query equal to a degraded view finds the image that view belongs to.
    score, hit = search_one(catalogue, images[1].view_embeddings[1])
    assert hit == product.images[1].id and score == pytest.approx(1.0, abs=1e-5)
    # Another process builds the same index from SQL alone, views included.
    other = make_catalogue(db_url, tmp_path / "other")
    assert other.shards.size == 6
    assert search_one(other, images[0].view_embeddings[0])[1] == product.images[0].id


def test_views_leave_with_their_image_and_product(db_url: str, tmp_path: Path) -> None:
    catalogue = make_catalogue(db_url, tmp_path)
    images = with_views(2, "a")
    product = catalogue.create_product("p", "P", {}, images)
    other = catalogue.create_product("q", "Q", {}, with_views(1, "b"))
    catalogue.delete_image("p", product.images[0].id)
    assert count(catalogue, Embedding) == 6 and catalogue.shards.size == 6
    assert search_one(catalogue, images[0].view_embeddings[0])[1] != product.images[0].id
    catalogue.delete_product("p")
    assert count(catalogue, Embedding) == 3 and catalogue.shards.size == 3
    # What is left is exactly the other product's image and its two views.
    left = catalogue.shards.store.search(unit(1), 10)[1][0]  # image ids, views folded in
    assert set(left[left >= 0]) == {other.images[0].id}
    # A replica that loaded before the delete catches up from SQL.
    replica = make_catalogue(db_url, tmp_path / "replica")
    assert replica.shards.size == 3


def test_shard_files_count_views(db_url: str, tmp_path: Path) -> None:
    catalogue = make_catalogue(db_url, tmp_path)
    catalogue.create_product("p", "P", {}, with_views(3, "a"))
    assert catalogue.shards.persist_dirty() == 1
    reopened = make_catalogue(db_url, tmp_path)  # same shard dir: the file is trusted
    assert reopened.shards.size == 9 and reopened.shards.rebuilds == 0


def test_vector_ids_round_trip() -> None:
    ids = np.array([1, 2, 10**12])
    assert (image_of(vector_id(ids, 5)) == ids).all()
    assert (image_of(np.array([-1])) == -1).all()
    owned = all_vector_ids([7])
    assert len(owned) == 8 and set(image_of(owned)) == {7} and vector_id(7, 0) in owned


def test_views_are_deterministic_and_parsed_strictly() -> None:
    image = Image.new("RGB", (300, 120), (200, 30, 30))
    first = degraded_views(image, tuple(VIEWS))
    second = degraded_views(image, tuple(VIEWS))
    assert [v.tobytes() for v in first] == [v.tobytes() for v in second]
    assert max(first[0].size) == 48 and max(first[1].size) == 80
    assert parse_views("blur, thumb48") == ("thumb48", "blur")
    assert parse_views("none") == () and parse_views("") == ()
    with pytest.raises(ValueError, match="unknown reference view"):
        parse_views("thumb48,sepia")


def test_every_view_code_fits_the_vector_id_layout() -> None:
    assert MAX_VIEW_CODE == vector_ids.MAX_VIEW_CODE
    assert all(1 <= code <= MAX_VIEW_CODE for code, _ in VIEWS.values())
