"""IndexSync with IVF shards on SQLite and PostgreSQL: training in the background, deletes at once,
files that keep the trained index, writes made during a rebuild, filters inside the search."""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np

from app.catalogue.products import NewImage
from app.db.migrate import upgrade_to_head
from app.db.session import make_engine, make_session_factory
from app.index.config import IndexConfig
from app.runtime.index_sync import IndexSync
from app.storage.blobs import FileBlobStore, sha256_hex
from tests.support.replicas import Replica

DIM = 32
CONFIG = IndexConfig(kind="auto", threshold=1_000, nlist=32, nprobe=32, delta_limit=64)


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM))
    rows = centres[rng.integers(0, 40, n)] + 0.4 * rng.standard_normal((n, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def images(vectors: np.ndarray, tag: str) -> list[NewImage]:
    return [
        NewImage(f"{tag}-{i}".encode(), sha256_hex(f"{tag}-{i}".encode()), "JPEG", 9, 9, v)
        for i, v in enumerate(vectors)
    ]


def replica(url: str, root: Path) -> Replica:
    factory = make_session_factory(make_engine(url))
    shards = IndexSync.open("test-model", DIM, root / "shards", factory, CONFIG)
    shards.sync(use_files=True)
    return Replica.of(factory, FileBlobStore(root / "blobs"), shards, 10_000)


def filled(db_url: str, root: Path) -> tuple[Replica, dict[str, list[int]], np.ndarray]:
    upgrade_to_head(db_url)
    catalogue = replica(db_url, root)
    vectors = clustered(1_200, 0)
    ids = {}
    for p in range(12):  # 12 products x 100 images
        product = catalogue.create_product(
            f"p{p}", f"P{p}", {}, images(vectors[p * 100 : (p + 1) * 100], f"p{p}")
        )
        ids[f"p{p}"] = [image.id for image in product.images]
    return catalogue, ids, vectors


def top1(catalogue: Replica, queries: np.ndarray) -> np.ndarray:
    return catalogue.shards.store.search(queries, 5)[1][:, 0]


def test_trained_in_background_and_deletes_invisible_at_once(db_url: str, tmp_path: Path) -> None:
    catalogue, ids, vectors = filled(db_url, tmp_path)
    shards = catalogue.shards
    all_ids = np.concatenate([ids[f"p{p}"] for p in range(12)])
    exact = top1(catalogue, vectors[::7])
    assert not shards.store.shards[0].index.is_ann
    assert shards.maintenance.in_background() and shards.maintenance.wait(60)
    assert shards.store.shards[0].index.is_ann and shards.store.shards[0].dirty
    assert (top1(catalogue, vectors[::7]) == exact).mean() >= 0.99
    assert np.array_equal(top1(catalogue, vectors[::7]), all_ids[::7])  # own vector first

    catalogue.delete_product("p3")
    gone = set(ids["p3"])
    _, found = shards.store.search(vectors[300:400], 20)
    assert not gone & set(found.ravel().tolist())
    assert shards.size == 1_100

    other = replica(db_url, tmp_path / "other")  # another replica, its own files
    _, found = other.shards.store.search(vectors[300:400], 20)
    assert not gone & set(found.ravel().tolist())
    catalogue.delete_image("p4", ids["p4"][0])
    other.shards.sync()
    for view in (catalogue, other):
        assert ids["p4"][0] not in view.shards.store.search(vectors[400:401], 10)[1]


def test_files_keep_the_trained_index(db_url: str, tmp_path: Path) -> None:
    catalogue, _, vectors = filled(db_url, tmp_path)
    catalogue.shards.maintenance.maintain()
    catalogue.delete_product("p0")  # a tombstone travels in the file too
    before = catalogue.shards.store.search(vectors[:50], 10)
    assert catalogue.shards.persist_dirty() == 1
    restarted = IndexSync.open(
        "test-model", DIM, tmp_path / "shards", catalogue.session_factory, CONFIG
    )
    restarted.sync(use_files=True)
    assert restarted.rebuilds == 0 and restarted.store.shards[0].index.is_ann
    assert restarted.size == 1_100
    after = restarted.store.search(vectors[:50], 10)
    assert np.array_equal(before[1], after[1])
    exact_only = IndexConfig(kind="exact")  # configured otherwise: rebuilt from SQL, exact
    other = IndexSync.open(
        "test-model", DIM, tmp_path / "shards", catalogue.session_factory, exact_only
    )
    other.sync(use_files=True)
    assert other.rebuilds == 1 and not other.store.shards[0].index.is_ann and other.size == 1_100


def test_writes_during_a_background_rebuild_are_kept(db_url: str, tmp_path: Path) -> None:
    catalogue, ids, vectors = filled(db_url, tmp_path)
    index = catalogue.shards.store.shards[0].index
    started, release = threading.Event(), threading.Event()
    train = index._train

    def slow_train(rows: np.ndarray) -> faiss.IndexIVF:
        started.set()
        release.wait(60)
        return train(rows)

    index._train = slow_train  # type: ignore[method-assign]
    assert catalogue.shards.maintenance.in_background()
    assert started.wait(60)
    late = clustered(30, 9)
    added = catalogue.add_images("p1", images(late, "late")).image_ids
    catalogue.delete_product("p2")
    assert top1(catalogue, late[:1])[0] == added[0]  # searchable during the rebuild
    release.set()
    assert catalogue.shards.maintenance.wait(60) and index.is_ann
    assert catalogue.shards.size == 1_200 + 30 - 100
    assert np.array_equal(top1(catalogue, late), added)
    _, found = catalogue.shards.store.search(vectors[200:300], 20)
    assert not set(ids["p2"]) & set(found.ravel().tolist())


def test_selector_filters_inside_the_search(db_url: str, tmp_path: Path) -> None:
    catalogue, ids, vectors = filled(db_url, tmp_path)
    catalogue.shards.maintenance.maintain()
    allowed = np.array(ids["p5"] + ids["p6"])
    _, found = catalogue.shards.store.search(vectors[:100], 10, allowed=allowed)
    assert set(found.ravel().tolist()) <= set(allowed.tolist())
    assert (found >= 0).all()  # a filter costs no results: 10 allowed hits per query
