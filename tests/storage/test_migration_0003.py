"""Migration 0003 on data written by the 0002 schema (SQLite and PostgreSQL): every vector moves
to `embeddings` as float16, views and shards kept, replicas build the same index from it, the
foreign key cascades, and the downgrade brings the 0002 layout back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from sqlalchemy import inspect, text

from app.db.migrate import alembic_config, upgrade_to_head
from app.db.session import make_engine, make_session_factory
from app.index.vector_ids import vector_id
from app.runtime.index_sync import IndexSync
from app.storage.blobs import FileBlobStore
from tests.support.replicas import Replica

DIM = 8


def migrate(url: str, revision: str, down: bool = False) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
    engine.dispose()


def test_0003_moves_0002_data_and_back(db_url: str, tmp_path: Path) -> None:
    migrate(db_url, "0002")
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(10, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = datetime.now(UTC)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        for p in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO products (id, sku, name, metadata, created_at, updated_at) "
                    "VALUES (:i, :s, 'P', :m, :t, :t)"
                ),
                {"i": p, "s": f"sku-{p}", "m": json.dumps({"n": p}), "t": now},
            )
        # Images 1-3 of model A (image 2 with two views), image 4 of model B in shard 1.
        for image, product, model, shard, views in (
            (1, 1, "A", 0, ""),
            (2, 1, "A", 0, "1,3"),
            (3, 2, "A", 0, ""),
            (4, 2, "B", 1, ""),
        ):
            conn.execute(
                text(
                    "INSERT INTO reference_images (id, product_id, sha256, blob_key, "
                    "image_format, width, height, embedding, model_id, shard, views, created_at) "
                    "VALUES (:i, :p, :h, :h, 'JPEG', 4, 4, :e, :m, :s, :v, :t)"
                ),
                {
                    "i": image,
                    "p": product,
                    "h": f"{image:064d}",
                    "e": vectors[image].tobytes(),
                    "m": model,
                    "s": shard,
                    "v": views,
                    "t": now,
                },
            )
        for code, row in ((1, 5), (3, 6)):
            conn.execute(
                text(
                    "INSERT INTO reference_views (image_id, code, embedding, model_id, shard) "
                    "VALUES (2, :c, :e, 'A', 0)"
                ),
                {"c": code, "e": vectors[row].tobytes()},
            )
        conn.execute(text("INSERT INTO shard_versions VALUES ('A', 0, 7), ('B', 1, 2)"))
    engine.dispose()

    upgrade_to_head(db_url)
    engine = make_engine(db_url)
    columns = {c["name"] for c in inspect(engine).get_columns("reference_images")}
    assert columns.isdisjoint({"embedding", "model_id", "shard", "views"})
    tables = set(inspect(engine).get_table_names())
    assert {"embeddings", "change_log", "log_heads", "replicas"} <= tables
    assert tables.isdisjoint({"reference_views", "shard_versions"})
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT model_id, image_id, code, shard, vector, views FROM embeddings "
                "ORDER BY model_id, image_id, code"
            )
        ).all()
        heads = conn.execute(text("SELECT * FROM log_heads ORDER BY model_id")).all()
    expected = [
        ("A", 1, 0, 0, 1, ""),
        ("A", 2, 0, 0, 2, "1,3"),
        ("A", 2, 1, 0, 5, ""),
        ("A", 2, 3, 0, 6, ""),
        ("A", 3, 0, 0, 3, ""),
        ("B", 4, 0, 1, 4, ""),
    ]
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in rows] == [
        (m, i, c, s, v) for m, i, c, s, _, v in expected
    ]
    for row, (*_, source, _views) in zip(rows, expected, strict=True):
        assert len(row[4]) == DIM * 2  # float16
        np.testing.assert_allclose(np.frombuffer(row[4], np.float16), vectors[source], atol=1e-3)
    assert [tuple(h) for h in heads] == [("A", 0, 0), ("B", 0, 0)]

    # A replica of model A builds its index from the migrated rows, views included.
    factory = make_session_factory(engine)
    shards = IndexSync.open("A", DIM, tmp_path / "shards", factory)
    shards.sync()
    assert shards.size == 5 and shards.complete is False  # image 4 has no vector of A
    _, hits = shards.store.search(vectors[[1, 3, 6]], 1)
    assert hits[:, 0].tolist() == [1, 3, 2]  # the view (row 6) finds its image
    # Writes after the migration go through the log, and deletes cascade from images.
    catalogue = Replica.of(factory, FileBlobStore(tmp_path / "blobs"), shards, 1000)
    catalogue.delete_image("sku-1", 2)
    assert shards.size == 2 and shards.position == 1
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM reference_images WHERE id = 4"))
        assert conn.execute(text("SELECT count(*) FROM embeddings")).scalar_one() == 2
    assert vector_id(2, 3) not in [
        int(i) for s in shards.store.shards.values() for i in s.index.contents()[0]
    ]
    engine.dispose()

    migrate(db_url, "0002", down=True)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        back = conn.execute(
            text("SELECT id, model_id, shard, views, embedding FROM reference_images ORDER BY id")
        ).all()
        versions = conn.execute(text("SELECT model_id, shard FROM shard_versions")).all()
    engine.dispose()
    assert [(r[0], r[1], r[2], r[3]) for r in back] == [(1, "A", 0, ""), (3, "A", 0, "")]
    for row in back:
        np.testing.assert_allclose(np.frombuffer(row[4], np.float32), vectors[row[0]], atol=1e-3)
    assert [tuple(v) for v in versions] == [("A", 0)]
    upgrade_to_head(db_url)  # and up again


@pytest.mark.parametrize("backend", ["sqlite"])
def test_0003_on_an_empty_0002_database(backend: str, make_db_url, tmp_path: Path) -> None:
    url = make_db_url(backend)
    migrate(url, "0002")
    upgrade_to_head(url)
    engine = make_engine(url)
    shards = IndexSync.open("A", DIM, tmp_path / "s", make_session_factory(engine))
    shards.sync()
    assert shards.size == 0 and shards.complete
    engine.dispose()


def test_migrated_schema_is_what_the_models_declare(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.db.tables import Base

    upgrade_to_head(db_url)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
