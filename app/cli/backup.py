"""`retailklip backup DIR` / `retailklip restore DIR`: a consistent copy taken while the service
keeps writing, and its restore into an empty database and blob directory.

Backup: SQL first (app/db/sql_backup.py: one committed state), then the blobs that copy names.
Blobs are content-addressed and written before the row that names them, and never rewritten, so
every blob a copied row names is on disk by the time the copy is taken; each is re-hashed on the
way, so a damaged file is reported rather than copied. `manifest.json` is written last: a
directory without it is not a backup.

Restore: blobs first (each checked against its key), then SQL, then the schema is migrated to
this version's head; the restored rows are counted against the manifest and every blob they name
is checked. Shard files are not part of a backup: a replica rebuilds them from SQL at start-up.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from app.db.migrate import upgrade_to_head
from app.db.session import make_engine
from app.db.sql_backup import BackupError, blob_keys, copy_sql, counts, restore_sql
from app.settings import Settings
from app.storage.blobs import FileBlobStore
from app.storage.files import atomic_write

MANIFEST = "manifest.json"
FORMAT = 1


def run_backup(settings: Settings, directory: Path) -> int:
    if directory.exists() and any(directory.iterdir()):
        raise BackupError(f"{directory} is not empty: back up into a new directory")
    directory.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        started = datetime.now(UTC)
        snapshot = copy_sql(engine, directory)
    finally:
        engine.dispose()
    live = FileBlobStore(settings.resolved_blob_dir)
    copy = FileBlobStore(directory / "blobs")
    damaged: list[str] = []
    total = 0
    for key in tqdm(snapshot.blob_keys, desc="blobs", unit="blob"):
        try:
            data = live.get(key)
        except FileNotFoundError:
            damaged.append(key)
            continue
        if copy.put(data) != key:
            damaged.append(key)
            continue
        total += len(data)
    manifest = {
        "format": FORMAT,
        "started_at": started.isoformat(),
        "database": settings.safe_database_url,
        "dialect": snapshot.dialect,
        "file": snapshot.file,
        "revision": snapshot.revision,
        "counts": snapshot.counts,
        "blobs": len(snapshot.blob_keys) - len(damaged),
        "blob_bytes": total,
        "missing_blobs": damaged,
    }
    atomic_write(directory / MANIFEST, json.dumps(manifest, indent=2).encode())
    print(
        f"backup of {settings.safe_database_url} in {directory}: "
        + ", ".join(f"{n} {k}" for k, n in snapshot.counts.items())
        + f", {manifest['blobs']} blobs ({total / 1e6:.1f} MB)"
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


def run_restore(settings: Settings, directory: Path) -> int:
    manifest = read_manifest(directory)
    expected = {str(k): int(v) for k, v in dict(manifest["counts"]).items()}  # type: ignore[call-overload]
    url = settings.resolved_database_url
    engine = make_engine(url)
    try:
        source = FileBlobStore(directory / "blobs")
        target = FileBlobStore(settings.resolved_blob_dir)
        keys = sorted(source.keys())
        for key in tqdm(keys, desc="blobs", unit="blob"):
            if target.put(source.get(key)) != key:
                raise BackupError(f"blob {key} in the backup is damaged")
        restore_sql(engine, directory / str(manifest["file"]), str(manifest["dialect"]))
    finally:
        engine.dispose()
    upgrade_to_head(url)
    engine = make_engine(url)
    try:
        found = counts(engine)
        missing = [key for key in blob_keys(engine) if not target.exists(key)]
    finally:
        engine.dispose()
    print(
        f"restored into {settings.safe_database_url}: "
        + ", ".join(f"{n} {k}" for k, n in found.items())
        + f", {len(keys)} blobs"
    )
    if found != expected:
        print(f"error: the backup's manifest says {expected}")
        return 1
    if missing:
        print(f"error: {len(missing)} restored rows name blobs that are missing")
        return 1
    return 0
