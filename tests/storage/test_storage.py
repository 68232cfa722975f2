"""SQL + FAISS shards on SQLite and PostgreSQL: SQL is the truth, shards follow it."""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.catalogue.errors import ImageNotFound, ProductExists, ProductNotFound
from app.catalogue.products import NewImage, ProductStore
from app.db import changelog
from app.db.migrate import SchemaOutOfDate, check_at_head, upgrade_to_head
from app.db.session import make_engine, make_session_factory
from app.db.tables import Embedding, Product, ReferenceImage
from app.index.stored_vectors import decode_vectors
from app.index.vector_ids import vector_id
from app.recognition.hit_names import HitNames, Match
from app.runtime.index_sync import IndexSync
from app.storage.blobs import FileBlobStore, sha256_hex
from tests.support.replicas import Replica, classify_vectors

DIM = 8
rng = np.random.default_rng(0)


def unit(n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def new_images(n: int, tag: str) -> list[NewImage]:
    vectors = unit(n)
    out = []
    for i in range(n):
        data = f"{tag}-{i}".encode()
        out.append(NewImage(data, sha256_hex(data), "JPEG", 10, 10, vectors[i]))
    return out


def make_catalogue(url: str, root: Path, capacity: int = 1000) -> Replica:
    upgrade_to_head(url)
    factory = make_session_factory(make_engine(url))
    shards = IndexSync.open("test-model", DIM, root / "shards", factory)
    shards.sync(use_files=True)
    return Replica.of(factory, FileBlobStore(root / "blobs"), shards, capacity)


def count(catalogue: Replica, model: type) -> int:
    with catalogue.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_migrations_reach_head_and_old_schema_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    with pytest.raises(SchemaOutOfDate, match="run `retailklip migrate`"):
        check_at_head(engine, db_url)
    upgrade_to_head(db_url)
    upgrade_to_head(db_url)  # idempotent
    check_at_head(engine, db_url)
    engine.dispose()


def test_register_dedupe_and_search(db_url: str, tmp_path: Path) -> None:
    catalogue = make_catalogue(db_url, tmp_path)
    images = new_images(3, "a")
    product = catalogue.create_product(
        "SKU-1", "Oat milk", {"brand": "Oatly"}, [*images, images[0]]
    )
    assert [i.sha256 for i in product.images] == [i.sha256 for i in images]
    assert product.metadata == {"brand": "Oatly"}
    assert catalogue.blobs.get(images[1].sha256) == images[1].data
    added = catalogue.add_images("SKU-1", [images[2], *new_images(1, "b")])
    assert added.added == 1 and added.image_ids[0] == product.images[2].id
    assert catalogue.shards.size == 4
    scores, hits = catalogue.shards.store.search(images[1].embedding[None], 1)
    assert hits[0, 0] == product.images[1].id and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ProductExists):
        catalogue.create_product("SKU-1", "again", {}, new_images(1, "c"))
    assert count(catalogue, ReferenceImage) == 4 and count(catalogue, Product) == 1
    with pytest.raises(ProductNotFound):
        catalogue.add_images("NOPE", new_images(1, "d"))


def test_delete_removes_from_search_at_once(db_url: str, tmp_path: Path) -> None:
    catalogue = make_catalogue(db_url, tmp_path)
    keep = catalogue.create_product("keep", "Keep", {}, new_images(2, "k"))
    gone = catalogue.create_product("gone", "Gone", {}, new_images(2, "g"))
    catalogue.delete_product("gone")
    _, hits = catalogue.shards.store.search(unit(1), 10)
    assert set(hits[0][hits[0] >= 0]) == {i.id for i in keep.images}
    catalogue.delete_image("keep", keep.images[0].id)
    assert catalogue.shards.size == 1
    assert count(catalogue, ReferenceImage) == 1
    with pytest.raises(ImageNotFound):
        catalogue.delete_image("keep", gone.images[0].id)


def test_a_failed_write_leaves_nothing(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = make_catalogue(db_url, tmp_path)
    catalogue.create_product("first", "First", {}, new_images(1, "f"))

    def explode(*args: object, **kwargs: object) -> dict[int, int]:
        raise RuntimeError("database went away")

    monkeypatch.setattr(changelog, "append", explode)
    with pytest.raises(RuntimeError):
        catalogue.create_product("second", "Second", {}, new_images(2, "s"))
    with pytest.raises(RuntimeError):
        catalogue.add_images("first", new_images(1, "t"))
    assert count(catalogue, Product) == 1 and count(catalogue, ReferenceImage) == 1
    assert catalogue.shards.size == 1
    monkeypatch.undo()
    fresh = IndexSync.open("test-model", DIM, tmp_path / "other", catalogue.session_factory)
    fresh.sync()
    assert fresh.size == 1


def test_an_answer_that_cannot_be_read_leaves_nothing_committed(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The created product is read for the answer inside the transaction: if that read fails
    (database gone), the client's error means nothing was written, so a retry is safe."""
    catalogue = make_catalogue(db_url, tmp_path)

    def database_gone(*args: object, **kwargs: object) -> Product:
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(ProductStore, "_get", database_gone)
    with pytest.raises(OperationalError):
        catalogue.create_product("late", "Late", {}, new_images(2, "l"))
    monkeypatch.undo()
    assert count(catalogue, Product) == 0 and count(catalogue, Embedding) == 0
    assert catalogue.shards.size == 0
    created = catalogue.create_product("late", "Late", {}, new_images(2, "l"))  # the retry
    assert len(created.images) == 2 and created.catalogues == ()


def test_a_second_process_follows_sql(db_url: str, tmp_path: Path) -> None:
    writer = make_catalogue(db_url, tmp_path / "one")
    reader = make_catalogue(db_url, tmp_path / "two")
    images = new_images(3, "p")
    product = writer.create_product("p", "P", {}, images)
    assert reader.shards.size == 0
    assert reader.shards.sync() == 1 and reader.shards.size == 3
    writer.delete_image("p", product.images[0].id)
    # Before the reader syncs, its stale hit is still dropped by the SQL look-up.
    _, hits = reader.shards.store.search(images[0].embedding[None], 1)
    assert hits[0, 0] == product.images[0].id
    assert product.images[0].id not in reader.matches_for(hits[0])
    reader.shards.sync()
    assert reader.shards.size == 2


def images_near(centre: np.ndarray, n: int, spread: float, tag: str) -> list[NewImage]:
    vectors = centre + spread * rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        NewImage(f"{tag}-{i}".encode(), sha256_hex(f"{tag}-{i}".encode()), "JPEG", 10, 10, v)
        for i, v in enumerate(vectors)
    ]


def test_classify_looks_deeper_when_one_product_crowds_the_top(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = make_catalogue(db_url, tmp_path / "one")
    reader = make_catalogue(db_url, tmp_path / "two")
    query = unit(1)[0]
    # 40 references of one product closer to the query than anything else: the first lookup
    # (16 images for top_k 3) sees that product alone.
    writer.create_product("crowd", "Crowd", {}, images_near(query, 40, 0.01, "c"))
    others = [images_near(query, 2, 0.5, f"o{i}") for i in range(5)]
    for i, images in enumerate(others):
        writer.create_product(f"other-{i}", f"Other {i}", {}, images)
    reader.shards.sync()
    lookups: list[int] = []
    matches_for = HitNames.matches_for

    def counted(
        self: HitNames, image_ids: list[int], head: Future[int] | None = None
    ) -> dict[int, Match]:
        lookups.append(len(list(image_ids)))
        return matches_for(self, image_ids, head)

    monkeypatch.setattr(HitNames, "matches_for", counted)
    best_other = sorted(
        (
            (max(float(query @ i.embedding) for i in images), f"other-{n}")
            for n, images in enumerate(others)
        ),
        reverse=True,
    )
    [verdict] = classify_vectors(reader.shards.store, reader.names, query[None], 3, 0.5)
    assert [m.sku for m in verdict.matches] == ["crowd"] + [sku for _, sku in best_other[:2]]
    assert [m.score for m in verdict.matches[1:]] == pytest.approx(
        [score for score, _ in best_other[:2]], abs=1e-3
    )
    assert lookups == [16, 34]  # the first 16 images, then the other 34 of the 50

    # Deleted through the writer, still in the reader's shards: never returned.
    writer.delete_product("crowd")
    lookups.clear()
    [verdict] = classify_vectors(reader.shards.store, reader.names, query[None], 3, 0.5)
    assert [m.sku for m in verdict.matches] == [sku for _, sku in best_other[:3]]
    assert reader.shards.size == 50 and len(lookups) == 2


def test_hits_are_named_from_memory_only_while_the_shards_hold_every_acknowledged_write(
    db_url: str, tmp_path: Path
) -> None:
    writer = make_catalogue(db_url, tmp_path / "one")
    reader = make_catalogue(db_url, tmp_path / "two")
    query = unit(1)[0]
    writer.create_product("a", "A", {}, images_near(query, 3, 0.05, "a"))
    writer.create_product("b", "B", {}, images_near(query, 3, 0.3, "b"))
    reader.shards.sync()
    lookups: list[str] = []

    def count_lookups(*args: object) -> None:
        statement = str(args[2])
        if "FROM reference_images JOIN products" in statement:
            lookups.append(statement)

    engine = reader.session_factory.kw["bind"]  # type: ignore[attr-defined]
    event.listen(engine, "before_cursor_execute", count_lookups)

    def classify() -> list[str]:
        head = reader.names.head_after(time.monotonic())
        head.result(10)
        [verdict] = classify_vectors(
            reader.shards.store, reader.names, query[None], 2, 0.0, head=head
        )
        return [m.sku for m in verdict.matches]

    assert classify() == ["a", "b"] and len(lookups) == 1  # first time: SQL names the hits
    assert classify() == ["a", "b"] and len(lookups) == 1  # then memory, the shards being current
    writer.delete_product("a")  # through another replica: the reader's shards still hold it
    assert classify() == ["b"] and len(lookups) == 2  # the head is past the reader: SQL again
    reader.shards.sync()
    assert classify() == ["b"] and len(lookups) == 2  # caught up: memory again, "a" forgotten
    [verdict] = classify_vectors(reader.shards.store, reader.names, query[None], 2, 0.0)
    assert [m.sku for m in verdict.matches] == ["b"] and len(lookups) == 3  # no head: SQL
    reader.names.close()


def test_ready_only_once_the_shards_hold_every_image(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = make_catalogue(db_url, tmp_path / "one")
    writer.create_product("a", "A", {}, new_images(2, "a"))
    reader = IndexSync.open("test-model", DIM, tmp_path / "two" / "shards", writer.session_factory)
    counted = changelog.missing_images

    def a_write_lands_meanwhile(session: Session, model_id: str) -> int:
        # After the reader's catch-up read, before it counts images without vectors: as when a
        # reindex is still writing.
        if not writer.shards.size > 2:
            writer.create_product("late", "Late", {}, new_images(3, "l"))
        return counted(session, model_id)

    monkeypatch.setattr(changelog, "missing_images", a_write_lands_meanwhile)
    reader.sync(use_files=True)
    assert reader.complete  # every image has a vector, and the shards hold all of them
    assert reader.size == 5 == count(writer, Embedding)


def test_shard_files_are_reused_only_when_they_match_sql(db_url: str, tmp_path: Path) -> None:
    catalogue = make_catalogue(db_url, tmp_path)
    catalogue.create_product("p", "P", {}, new_images(5, "p"))
    assert catalogue.shards.persist_dirty() == 1
    files = list((tmp_path / "shards").rglob("*.faiss"))
    assert len(files) == 1 and files[0].name == "shard-000000-v1.faiss"

    restarted = IndexSync.open("test-model", DIM, tmp_path / "shards", catalogue.session_factory)
    restarted.sync(use_files=True)
    assert restarted.size == 5 and restarted.rebuilds == 0 and restarted.position == 1

    catalogue.add_images("p", new_images(1, "q"))  # SQL moves on: the file replays the log
    behind = IndexSync.open("test-model", DIM, tmp_path / "shards", catalogue.session_factory)
    behind.sync(use_files=True)
    assert behind.size == 6 and behind.rebuilds == 0 and behind.position == 2

    files[0].write_bytes(b"garbage")  # a torn or corrupted file is rebuilt, not trusted
    corrupt = IndexSync.open("test-model", DIM, tmp_path / "shards", catalogue.session_factory)
    corrupt.sync(use_files=True)
    assert corrupt.size == 6 and corrupt.rebuilds == 1

    # A file holding what SQL does not (the database was restored from an older backup,
    # say) is caught by the count check after replay.
    catalogue.shards.persist_dirty()
    with catalogue.session_factory() as session:
        session.query(Embedding).filter(Embedding.image_id == 1).delete()
        session.commit()
    odd = IndexSync.open("test-model", DIM, tmp_path / "shards", catalogue.session_factory)
    odd.sync(use_files=True)
    assert odd.size == 5 and odd.rebuilds == 1


def test_many_shards_merge_top_k_like_brute_force(db_url: str, tmp_path: Path) -> None:
    catalogue = make_catalogue(db_url, tmp_path, capacity=7)
    for p in range(6):
        catalogue.create_product(f"p{p}", f"P{p}", {}, new_images(9, f"p{p}"))
    with catalogue.session_factory() as session:
        shard_count = session.scalar(select(func.count(func.distinct(Embedding.shard))))
        rows = session.execute(select(Embedding.image_id, Embedding.vector)).all()
    assert shard_count == 8 and len(catalogue.shards.store.shards) == 8  # 54 vectors / 7 per shard
    assert max(s.index.ntotal for s in catalogue.shards.store.shards.values()) <= 7
    ids = np.array([r[0] for r in rows])
    matrix = decode_vectors([r[1] for r in rows], DIM)  # float16 in SQL, unit float32 searched
    queries = unit(20)
    for k in (1, 5, 30, 54, 60):
        scores, hits = catalogue.shards.store.search(queries, k)
        brute = queries @ matrix.T
        for q in range(len(queries)):
            order = np.argsort(-brute[q])[:k]
            np.testing.assert_allclose(scores[q, : len(order)], brute[q, order], atol=1e-5)
            assert set(hits[q, : len(order)]) == set(ids[order])
        assert (hits[:, 54:] == -1).all()


def test_local_writes_apply_out_of_order_without_duplicates(db_url: str, tmp_path: Path) -> None:
    catalogue = make_catalogue(db_url, tmp_path)
    first = catalogue.create_product("p", "P", {}, new_images(2, "a"))
    shards = catalogue.shards
    assert shards.position == 1
    ids = vector_id(np.array([i.id for i in first.images]))  # shards are keyed by vector id
    vectors = unit(2)
    shards.follower.apply_added(0, 1, ids, vectors)  # replayed: already applied, ignored
    assert shards.size == 2
    # Another process's write (entry 2) is not applied here; ours (entry 3) arrives first:
    other = make_catalogue(db_url, tmp_path / "other")
    other.add_images("p", new_images(1, "b"))
    catalogue.add_images("p", new_images(1, "c"))
    assert shards.size == 3 and shards.position == 1  # searchable now, gap remembered
    shards.follower.apply_added(0, 3, ids, vectors)  # an upsert, never a duplicate
    assert shards.size == 3
    assert shards.sync() == 2  # the gap closes from the log: entries 2 and 3
    assert shards.position == 3 and shards.size == 4 and shards.rebuilds == 1


def test_gc_deletes_only_old_unreferenced_blobs(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli.gc_blobs import run_gc
    from app.settings import Settings

    catalogue = make_catalogue(db_url, tmp_path)
    kept, dropped = new_images(1, "kept"), new_images(1, "dropped")
    catalogue.create_product("kept", "K", {}, kept)
    catalogue.create_product("dropped", "D", {}, dropped)
    catalogue.delete_product("dropped")
    settings = Settings(database_url=db_url, blob_dir=tmp_path / "blobs", data_dir=tmp_path)
    run_gc(settings, grace_hours=1)  # everything is younger than the grace period
    assert catalogue.blobs.exists(dropped[0].sha256)
    run_gc(settings, grace_hours=0, dry_run=True)
    assert "would delete 1 unreferenced blobs" in capsys.readouterr().out
    assert catalogue.blobs.exists(dropped[0].sha256)
    run_gc(settings, grace_hours=0)
    assert not catalogue.blobs.exists(dropped[0].sha256)
    assert catalogue.blobs.get(kept[0].sha256) == kept[0].data
