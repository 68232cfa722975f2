"""`retailklip gc-blobs`: delete stored image bytes that no reference image points at any more."""

from __future__ import annotations

from sqlalchemy import select

from app.db.migrate import open_database
from app.db.session import make_session_factory
from app.db.tables import ReferenceImage
from app.settings import Settings
from app.storage.blobs import FileBlobStore


def run_gc(settings: Settings, grace_hours: float, dry_run: bool = False) -> int:
    """Blobs are written before their row commits, so only bytes older than the grace period
    (far longer than any request) are candidates: a just-written blob is never taken."""
    engine = open_database(settings.storage.database_url, settings.storage.auto_migrate)
    blobs = FileBlobStore(settings.storage.blob_dir)
    candidates = set(blobs.keys_older_than(grace_hours * 3600))
    with make_session_factory(engine)() as session:
        referenced = set(session.scalars(select(ReferenceImage.blob_key).distinct()))
    engine.dispose()
    orphans = sorted(candidates - referenced)
    if not dry_run:
        for key in orphans:
            blobs.delete(key)
    verb = "would delete" if dry_run else "deleted"
    print(f"{verb} {len(orphans)} unreferenced blobs older than {grace_hours} h")
    return 0
