"""Replicas follow the change log (SQLite and PostgreSQL): deletes reach every replica, missed
entries are caught up without a rebuild, a replica behind retention rebuilds, sequence numbers
commit in order under concurrent writers, and a reindex to another model leaves the old
model's answers alone until the switch."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from app.catalogue.products import NewImage
from app.cli.model_admin import run_drop_model
from app.cli.reindex import _store
from app.db import changelog
from app.db.tables import ChangeLogEntry, Embedding, LogHead, ReferenceImage
from app.index.log_follower import Head
from app.index.stored_vectors import decode_vectors
from app.runtime.index_sync import IndexSync
from app.settings import Settings
from app.storage.blobs import sha256_hex
from tests.storage.test_storage import DIM, make_catalogue, new_images, unit
from tests.support.replicas import Replica, classify_vectors


def index_contents(shards: IndexSync) -> dict[int, np.ndarray]:
    """vector id -> vector, over every shard (what a replica would answer from)."""
    out: dict[int, np.ndarray] = {}
    for shard in shards.store.shards.values():
        ids, vectors = shard.index.contents()
        out.update(zip(ids.tolist(), vectors, strict=True))
    return out


def assert_same_index(a: IndexSync, b: IndexSync) -> None:
    left, right = index_contents(a), index_contents(b)
    assert left.keys() == right.keys()
    for key, vector in left.items():
        np.testing.assert_array_equal(vector, right[key])


def skus(catalogue: Replica, query: np.ndarray) -> list[str]:
    result = classify_vectors(catalogue.shards.store, catalogue.names, query[None], 10, 0.0)[0]
    return [m.sku for m in result.matches]


def test_a_delete_is_invisible_to_the_next_search_on_every_replica(
    db_url: str, tmp_path: Path
) -> None:
    a = make_catalogue(db_url, tmp_path / "a")
    b = make_catalogue(db_url, tmp_path / "b")
    images = new_images(4, "d")
    a.create_product("keep", "Keep", {}, images[:2])
    a.create_product("gone", "Gone", {}, images[2:])
    b.shards.sync()
    assert "gone" in skus(b, images[2].embedding)
    rebuilds = b.shards.rebuilds
    b.delete_product("gone")  # written by replica b ...
    for replica in (a, b):  # ... invisible on both at once (a's index still holds it)
        assert "gone" not in skus(replica, images[2].embedding)
        assert skus(replica, images[0].embedding)[0] == "keep"
    assert a.shards.size == 4 and b.shards.size == 2
    assert a.shards.sync() == 1  # one log entry applied, no rebuild
    assert a.shards.size == 2 and a.shards.rebuilds == 1 and b.shards.rebuilds == rebuilds
    assert_same_index(a.shards, b.shards)


def test_a_replica_that_missed_entries_catches_up_without_rebuilding(
    db_url: str, tmp_path: Path
) -> None:
    writer = make_catalogue(db_url, tmp_path / "w", capacity=5)
    reader = make_catalogue(db_url, tmp_path / "r", capacity=5)
    reader.shards.persist_dirty()
    products = [writer.create_product(f"p{i}", "P", {}, new_images(3, f"p{i}")) for i in range(6)]
    writer.delete_image("p1", products[1].images[0].id)
    writer.delete_product("p2")
    writer.add_images("p3", new_images(2, "more"))
    assert reader.shards.size == 0 and reader.shards.position == 0
    # Restarted from its files (position 0) or still running: the log brings it up to date.
    restarted = IndexSync.open("test-model", DIM, tmp_path / "r" / "shards", reader.session_factory)
    restarted.sync(use_files=True)
    assert reader.shards.sync() == 9  # 6 creates, 2 deletes, 1 add
    for replica in (reader.shards, restarted):
        assert replica.rebuilds == (1 if replica is reader.shards else 0)
        assert replica.position == 9 and replica.size == 6 * 3 - 1 - 3 + 2
        assert_same_index(replica, writer.shards)
    fresh = IndexSync.open("test-model", DIM, tmp_path / "fresh", reader.session_factory)
    fresh.sync()  # and what a full rebuild from SQL would hold
    assert_same_index(fresh, reader.shards)


def test_a_replica_behind_the_logs_retention_rebuilds(db_url: str, tmp_path: Path) -> None:
    writer = make_catalogue(db_url, tmp_path / "w")
    reader = make_catalogue(db_url, tmp_path / "r")
    writer.create_product("p", "P", {}, new_images(2, "a"))
    reader.shards.sync()
    assert reader.shards.rebuilds == 1 and reader.shards.position == 1
    writer.add_images("p", new_images(1, "b"))
    writer.add_images("p", new_images(1, "c"))
    with writer.session_factory() as session:
        assert changelog.prune(session, retention_s=3600) == 0  # all younger than an hour
        assert changelog.prune(session, retention_s=0) == 3
        assert changelog.head(session, "test-model") == Head(3, 3)
    assert reader.shards.sync() == 1  # entries 2 and 3 are gone: one rebuild
    assert reader.shards.rebuilds == 2 and reader.shards.size == 4
    writer.add_images("p", new_images(1, "d"))  # and it follows the log again from there
    assert reader.shards.sync() == 1 and reader.shards.rebuilds == 2
    assert_same_index(reader.shards, writer.shards)


def test_sequence_numbers_commit_in_order(db_url: str, tmp_path: Path) -> None:
    """The hazard a plain sequence has: n+1 committed and read while n is still open, so a
    replica moves past n for good. The counter row makes the second writer wait instead."""
    catalogue = make_catalogue(db_url, tmp_path)
    first = catalogue.session_factory()
    seq_first = changelog.append(first, "m", "add", np.array([8]))
    got: list[int] = []

    def second_writer() -> None:
        with catalogue.session_factory() as session:
            got.append(changelog.append(session, "m", "add", np.array([16])))
            session.commit()

    thread = threading.Thread(target=second_writer)
    thread.start()
    time.sleep(1.0)
    assert not got  # waiting on the first writer's counter row
    with catalogue.session_factory() as reader:
        assert changelog.entries_after(reader, "m", 0, 10) == []
    first.commit()
    first.close()
    thread.join(30)
    assert got == [seq_first + 1]
    with catalogue.session_factory() as reader:
        assert [e.seq for e in changelog.entries_after(reader, "m", 0, 10)] == [1, 2]


def test_concurrent_writers_and_a_following_replica_agree_with_sql(
    db_url: str, tmp_path: Path
) -> None:
    writers = [make_catalogue(db_url, tmp_path / f"w{i}") for i in range(3)]
    follower = make_catalogue(db_url, tmp_path / "f")
    done = threading.Event()

    def write(i: int) -> None:
        catalogue = writers[i]
        for n in range(8):
            product = catalogue.create_product(f"w{i}-{n}", "P", {}, new_images(2, f"w{i}-{n}"))
            if n % 3 == 0:
                catalogue.delete_image(product.sku, product.images[0].id)

    def follow() -> None:
        while not done.is_set():
            follower.shards.sync()

    reader = threading.Thread(target=follow)
    reader.start()
    threads = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    reader.join(60)
    follower.shards.sync()
    assert follower.shards.rebuilds == 1
    with follower.session_factory() as session:
        seqs = session.scalars(select(ChangeLogEntry.seq).order_by(ChangeLogEntry.seq)).all()
        in_sql = session.scalar(select(func.count()).select_from(Embedding))
    assert seqs == list(range(1, 3 * (8 + 3) + 1))  # gapless
    assert follower.shards.size == in_sql == 3 * (8 * 2 - 3)
    fresh = IndexSync.open("test-model", DIM, tmp_path / "fresh", follower.session_factory)
    fresh.sync()
    assert_same_index(follower.shards, fresh)


def test_reindex_to_another_model_leaves_the_old_answers_until_the_switch(
    db_url: str, tmp_path: Path
) -> None:
    old = make_catalogue(db_url, tmp_path / "old")
    products = [old.create_product(f"p{i}", "P", {}, new_images(3, f"p{i}")) for i in range(4)]
    queries = unit(6)
    before = [skus(old, q) for q in queries]
    rebuilds = old.shards.rebuilds
    # A replica on the new model starts before the reindex: it reports not ready.
    new = Replica.of(
        old.session_factory,
        old.blobs,
        IndexSync.open("new-model", DIM, tmp_path / "new", old.session_factory),
        1000,
    )
    new.shards.sync()
    assert not new.shards.complete and new.shards.size == 0
    with old.session_factory() as session:
        rows = session.execute(
            select(ReferenceImage.id, ReferenceImage.product_id).order_by(ReferenceImage.id)
        ).all()
    new_vectors = unit(len(rows))
    for start in range(0, len(rows), 5):  # batches, as `retailklip reindex` commits them
        with old.session_factory() as session:
            batch = rows[start : start + 5]
            _store(session, batch, new_vectors[start : start + 5], "new-model", (), 1000)
        old.shards.sync()
        new.shards.sync()
        assert [skus(old, q) for q in queries] == before  # old model: same answers throughout
        assert new.shards.complete == (start + 5 >= len(rows))
    assert old.shards.rebuilds == rebuilds and old.shards.position == 4
    assert new.shards.size == len(rows) and new.shards.rebuilds == 1
    # The new replica answers from the new vectors; both models' rows are in SQL.
    _, hits = new.shards.store.search(new_vectors[5][None], 1)
    assert hits[0, 0] == rows[5].id
    with old.session_factory() as session:
        per_model = dict(
            session.execute(
                select(Embedding.model_id, func.count()).group_by(Embedding.model_id)
            ).all()
        )
    assert per_model == {"test-model": 12, "new-model": 12}
    # A delete now reaches both models' replicas through their own logs.
    old.delete_product("p0")
    assert new.shards.sync() == 1 and new.shards.size == 9
    assert all(
        h not in {i.id for i in products[0].images}
        for h in new.shards.store.search(new_vectors[:3], 1)[1].ravel()
    )
    # Dropping the old model is refused while a replica on it reported lately.
    settings = Settings(database_url=db_url, data_dir=tmp_path)
    assert run_drop_model(settings, "test-model", live_s=300, force=False) == 1
    assert run_drop_model(settings, "test-model", live_s=0, force=False) == 0
    with old.session_factory() as session:
        left = session.scalars(select(Embedding.model_id).distinct()).all()
        heads = session.scalars(select(LogHead.model_id)).all()
    assert left == ["new-model"] and heads == ["new-model"]


def test_float16_vectors_round_trip_to_unit_length(db_url: str, tmp_path: Path) -> None:
    catalogue = make_catalogue(db_url, tmp_path)
    vector = unit(1)[0]
    data = b"f16"
    catalogue.create_product("p", "P", {}, [NewImage(data, sha256_hex(data), "PNG", 1, 1, vector)])
    with catalogue.session_factory() as session:
        blob = session.scalar(select(Embedding.vector))
    assert len(blob) == DIM * 2
    stored = decode_vectors([blob], DIM)[0]
    assert np.linalg.norm(stored) == pytest.approx(1.0, abs=1e-6)
    assert float(stored @ vector) == pytest.approx(1.0, abs=1e-5)
