"""`retailklip backup` / `restore` from outside, on SQLite and PostgreSQL: a round trip keeps
every row and blob, and each refusal (a used directory, a database that holds data, a backup of
the other dialect, an unfinished backup, damaged bytes) says why and changes nothing. The drill
under writers is in tests/drills/test_drills.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.catalogue.review_queue import QueuedPhoto, ReviewQueue
from app.db.migrate import upgrade_to_head
from app.db.session import make_engine, make_session_factory
from app.storage.blobs import FileBlobStore
from tests.image_factory import image_bytes
from tests.storage.test_storage import make_catalogue, new_images
from tests.support.cli import retailklip
from tests.support.databases import create_pg_database, drop_pg_database
from tests.support.drills import blob_files, blob_path, sql_state
from tests.support.servers import settings_env


def env(data_dir: Path, url: str | None) -> dict[str, str]:
    settings: dict[str, object] = {"data_dir": data_dir}
    if url is not None:
        settings["database_url"] = url
    return settings_env(settings)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'retailklip.db').resolve()}"


def review_queue(url: str, data_dir: Path) -> ReviewQueue:
    upgrade_to_head(url)
    factory = make_session_factory(make_engine(url))
    return ReviewQueue(factory, FileBlobStore(data_dir / "review"), 100, 86400.0)


def keep_for_review(url: str, data_dir: Path, colour: str) -> int:
    photo = QueuedPhoto(image_bytes("JPEG", color=colour), "test-model", "ambiguous", 0.4, 0.01, [])
    item = review_queue(url, data_dir).add(photo)
    assert item is not None
    return item


@pytest.fixture(params=["sqlite", "postgresql"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str | None, str]:
    """A data dir and database URL (None: SQLite in the data dir) holding three products."""
    data_dir = tmp_path / "source"
    url = None if request.param == "sqlite" else create_pg_database(prefix="retailklip_bk")
    if url is not None:
        request.addfinalizer(lambda: drop_pg_database(url))
    resolved = url or sqlite_url(data_dir)
    replica = make_catalogue(resolved, data_dir)
    for sku, n in (("a", 1), ("b", 2), ("c", 3)):
        replica.products.create_product(
            sku, sku.upper(), {"n": n}, new_images(n, sku), barcodes=[f"0000000000000{n}"]
        )
    for colour in ("red", "green"):
        keep_for_review(resolved, data_dir, colour)
    return data_dir, url, resolved


def test_a_round_trip_keeps_every_row_and_blob(
    source: tuple[Path, str | None, str], tmp_path: Path
) -> None:
    data_dir, url, resolved = source
    done = retailklip("backup", str(tmp_path / "bk"), env=env(data_dir, url))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "bk/manifest.json").read_text())
    assert manifest["counts"]["products"] == 3 and manifest["blobs"] == 6
    assert manifest["counts"]["review_items"] == 2 and manifest["review_photos"] == 2
    assert manifest["counts"]["product_barcodes"] == 3
    target = tmp_path / "target"
    target_url = None if url is None else create_pg_database(prefix="retailklip_bk")
    try:
        restored = retailklip("restore", str(tmp_path / "bk"), env=env(target, target_url))
        assert restored.returncode == 0, restored.stderr
        before, after = (
            sql_state(resolved, "test-model"),
            sql_state(target_url or sqlite_url(target), "test-model"),
        )
        assert after.products == before.products == {"a": 1, "b": 2, "c": 3}
        assert after.vectors == before.vectors == 6
        restored = make_catalogue(target_url or sqlite_url(target), target / "replica")
        assert restored.get_product("c").barcodes == ("00000000000003",)
        assert all(blob_path(target / "blobs", k).is_file() for k in after.blob_keys)
        # The review queue comes back whole: every kept item's photo is there to look at.
        before_queue = review_queue(resolved, data_dir).page(10, 0)[0]
        after_queue = review_queue(target_url or sqlite_url(target), target).page(10, 0)[0]
        assert [i.id for i in after_queue] == [i.id for i in before_queue] and after_queue
        for item in after_queue:
            assert review_queue(target_url or sqlite_url(target), target).photo(item.id) == (
                review_queue(resolved, data_dir).photo(item.id)
            )
        # A second restore onto the same, now full, database is refused and changes nothing.
        again = retailklip("restore", str(tmp_path / "bk"), env=env(target, target_url))
        assert again.returncode == 2 and "holds rows (" in again.stderr
        assert "products: 3" in again.stderr
        assert sql_state(target_url or sqlite_url(target), "test-model") == after
    finally:
        if target_url is not None:
            drop_pg_database(target_url)


def test_refusals_say_why_and_change_nothing(
    source: tuple[Path, str | None, str], tmp_path: Path
) -> None:
    data_dir, url, _ = source
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("x")
    refused = retailklip("backup", str(used), env=env(data_dir, url))
    assert refused.returncode == 2 and "not empty" in refused.stderr
    assert sorted(p.name for p in used.iterdir()) == ["something"]

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    refused = retailklip("restore", str(unfinished), env=env(tmp_path / "t1", None))
    assert refused.returncode == 2 and "manifest.json" in refused.stderr
    assert not (tmp_path / "t1").exists()

    assert retailklip("backup", str(tmp_path / "bk"), env=env(data_dir, url)).returncode == 0
    other = (
        env(tmp_path / "t2", create_pg_database(prefix="retailklip_bk"))
        if url is None
        else env(tmp_path / "t2", None)
    )
    try:
        refused = retailklip("restore", str(tmp_path / "bk"), env=other)
        assert refused.returncode == 2 and "restores into" in refused.stderr
    finally:
        if url is None:
            drop_pg_database(other["RETAILKLIP_DATABASE_URL"])

    # A blob a row names, gone from the live store: the backup says so and fails.
    victim = next((data_dir / "blobs").glob("??/??/*"))
    victim.unlink()
    damaged = retailklip("backup", str(tmp_path / "bk2"), env=env(data_dir, url))
    assert damaged.returncode == 1 and "missing or damaged" in damaged.stdout
    assert victim.name in json.loads((tmp_path / "bk2/manifest.json").read_text())["missing_blobs"]


def test_a_refused_restore_writes_nothing_and_a_queue_alone_is_not_empty(
    source: tuple[Path, str | None, str], tmp_path: Path
) -> None:
    """The target is checked before any byte is copied; review items alone make it not empty."""
    data_dir, url, _ = source
    assert retailklip("backup", str(tmp_path / "bk"), env=env(data_dir, url)).returncode == 0
    target = tmp_path / "target"
    target_url = None if url is None else create_pg_database(prefix="retailklip_bk")
    try:
        resolved = target_url or sqlite_url(target)
        item = keep_for_review(resolved, target, "blue")
        (target / "blobs").mkdir(parents=True)
        refused = retailklip("restore", str(tmp_path / "bk"), env=env(target, target_url))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "holds rows (review_items: 1)" in refused.stderr
        assert blob_files(target / "blobs") == []  # no reference bytes copied in
        assert len(blob_files(target / "review")) == 1  # only its own photo
        assert [i.id for i in review_queue(resolved, target).page(10, 0)[0]] == [item]
        assert sql_state(resolved, "test-model").products == {}
    finally:
        if target_url is not None:
            drop_pg_database(target_url)
