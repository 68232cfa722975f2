"""`retailklip backup DIR` / `retailklip restore DIR`: a consistent copy taken while the service
keeps writing, and its restore into an empty database and blob directory.

Backup: SQL first (app/db/sql_backup.py: one committed state), then the blobs that copy names:
the reference images' bytes and the review queue's photos.
Blobs are content-addressed and written before the row that names them, and never rewritten, so
every blob a copied row names is on disk by the time the copy is taken; each is re-hashed on the
way, so a damaged file is reported rather than copied. `manifest.json` is written last: a
directory without it is not a backup.

Restore: first the target is checked (the same dialect, no row in any table the service writes):
a refused restore changes nothing at all. Then blobs (each checked against its key), then SQL,
then the schema is migrated to this version's head; the restored rows are counted against the
manifest and every blob they name is checked. Shard files are not part of a backup: a replica
rebuilds them from SQL at start-up.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from app.db.migrate import upgrade_to_head
from app.db.session import make_engine
from app.db.sql_backup import (
    BackupError,
    blob_keys,
    check_restorable,
    copy_sql,
    counts,
    drop_review_items,
    restore_sql,
    review_keys,
)
from app.settings import Settings
from app.storage.blobs import BlobStore, FileBlobStore
from app.storage.files import atomic_write

MANIFEST = "manifest.json"
FORMAT = 2  # 2: the review queue's photos too, under review/
BLOBS, REVIEW = "blobs", "review"


def _copy_blobs(keys: list[str], source: BlobStore, target: BlobStore, what: str) -> list[str]:
    """Copy these blobs, each re-hashed on the way; returns the keys missing or damaged."""
    damaged: list[str] = []
    for key in tqdm(keys, desc=what, unit="blob"):
        try:
            data = source.get(key)
        except FileNotFoundError:
            damaged.append(key)
            continue
        if target.put(data) != key:
            damaged.append(key)
    return damaged


def run_backup(settings: Settings, directory: Path) -> int:
    if directory.exists() and any(directory.iterdir()):
        raise BackupError(f"{directory} is not empty: back up into a new directory")
    directory.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.storage.database_url)
    try:
        started = datetime.now(UTC)
        snapshot = copy_sql(engine, directory)
    finally:
        engine.dispose()
    damaged = _copy_blobs(
        snapshot.blob_keys,
        FileBlobStore(settings.storage.blob_dir),
        FileBlobStore(directory / BLOBS),
        "blobs",
    )
    # A review item dropped since the snapshot takes its photo along: the copy then lacks it,
    # and restore drops that item's row (the queue is a worklist, not a record).
    lost_review = _copy_blobs(
        snapshot.review_keys,
        FileBlobStore(settings.storage.review_dir),
        FileBlobStore(directory / REVIEW),
        "review photos",
    )
    manifest = {
        "format": FORMAT,
        "started_at": started.isoformat(),
        "database": settings.storage.safe_database_url,
        "dialect": snapshot.dialect,
        "file": snapshot.file,
        "revision": snapshot.revision,
        "counts": snapshot.counts,
        "blobs": len(snapshot.blob_keys) - len(damaged),
        "missing_blobs": damaged,
        "review_photos": len(snapshot.review_keys) - len(lost_review),
        "review_photos_gone": lost_review,
    }
    atomic_write(directory / MANIFEST, json.dumps(manifest, indent=2).encode())
    print(
        f"backup of {settings.storage.safe_database_url} in {directory}: "
        + ", ".join(f"{n} {k}" for k, n in snapshot.counts.items())
        + f", {manifest['blobs']} blobs, {manifest['review_photos']} review photos"
    )
    if damaged:
        print(f"error: {len(damaged)} blobs rows name are missing or damaged in the live store")
        return 1
    return 0


def read_manifest(directory: Path) -> dict[str, object]:
    path = directory / MANIFEST
    if not path.is_file():
        raise BackupError(f"{directory} holds no {MANIFEST}: not a backup, or an unfinished one")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')!r}; this version reads {FORMAT}")
    return dict(manifest)


def _restore_blobs(source: FileBlobStore, target: FileBlobStore, what: str) -> int:
    keys = sorted(source.keys())
    for key in tqdm(keys, desc=what, unit="blob"):
        if target.put(source.get(key)) != key:
            raise BackupError(f"{what}: {key} in the backup is damaged")
    return len(keys)


def run_restore(settings: Settings, directory: Path) -> int:
    manifest = read_manifest(directory)
    expected = {str(k): int(v) for k, v in dict(manifest["counts"]).items()}  # type: ignore[call-overload]
    gone = {str(k) for k in manifest["review_photos_gone"]}  # type: ignore[attr-defined]
    url = settings.storage.database_url
    engine = make_engine(url)
    blobs = FileBlobStore(settings.storage.blob_dir)
    review = FileBlobStore(settings.storage.review_dir)
    try:
        check_restorable(engine, str(manifest["dialect"]))  # before anything is written
        copied = _restore_blobs(FileBlobStore(directory / BLOBS), blobs, "blobs")
        _restore_blobs(FileBlobStore(directory / REVIEW), review, "review photos")
        restore_sql(engine, directory / str(manifest["file"]))
    finally:
        engine.dispose()
    upgrade_to_head(url)
    engine = make_engine(url)
    try:
        dropped = drop_review_items(engine, gone)
        found = counts(engine)
        missing = [key for key in blob_keys(engine) if not blobs.exists(key)]
        missing += [key for key in review_keys(engine) if not review.exists(key)]
    finally:
        engine.dispose()
    expected["review_items"] -= dropped
    print(
        f"restored into {settings.storage.safe_database_url}: "
        + ", ".join(f"{n} {k}" for k, n in found.items())
        + f", {copied} blobs"
    )
    if found != expected:
        print(f"error: the backup's manifest says {expected}")
        return 1
    if missing:
        print(f"error: {len(missing)} restored rows name blobs that are missing")
        return 1
    return 0
