"""`retailklip reindex`: re-embed every stored reference image with the configured model."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session
from tqdm import tqdm

from app.catalog import bump_shard_versions
from app.db.migrate import open_database
from app.db.models import ReferenceImage
from app.db.session import make_session_factory
from app.encoder.preprocess import decode_image
from app.encoder.runtime import load_encoder
from app.settings import Settings
from app.storage.blobs import FileBlobStore


def _store(session: Session, rows: list[Row], vectors: np.ndarray, model_id: str) -> int:
    """Swap embeddings in one transaction; a row deleted or re-embedded meanwhile is skipped."""
    touched: dict[str, set[int]] = {}
    updated = 0
    for row, vector in zip(rows, vectors, strict=True):
        result = session.execute(
            update(ReferenceImage)
            .where(ReferenceImage.id == row.id, ReferenceImage.model_id == row.model_id)
            .values(embedding=np.asarray(vector, dtype=np.float32).tobytes(), model_id=model_id)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:
            touched.setdefault(row.model_id, set()).add(row.shard)
            touched.setdefault(model_id, set()).add(row.shard)
            updated += 1
    for touched_model, shards in sorted(touched.items()):
        bump_shard_versions(session, touched_model, shards)
    session.commit()
    return updated


def run_reindex(settings: Settings, batch_size: int = 32) -> int:
    """Idempotent and resumable: only rows made by another model are touched, a batch per commit.

    Running services pick the new embeddings up through the shard versions bumped here.
    """
    engine = open_database(settings.resolved_database_url, settings.auto_migrate)
    session_factory = make_session_factory(engine)
    encoder = load_encoder(settings.model, settings.device)
    blobs = FileBlobStore(settings.resolved_blob_dir)
    stale = ReferenceImage.model_id != encoder.model_id
    with session_factory() as session:
        todo = session.scalar(select(func.count()).where(stale)) or 0
    failed: list[int] = []
    done = 0
    with tqdm(total=todo, desc=f"re-embedding with {encoder.model_id}", unit="img") as bar:
        while True:
            with session_factory() as session:
                query = (
                    select(
                        ReferenceImage.id,
                        ReferenceImage.blob_key,
                        ReferenceImage.model_id,
                        ReferenceImage.shard,
                    )
                    .where(stale, ReferenceImage.id.not_in(failed))
                    .order_by(ReferenceImage.id)
                    .limit(batch_size)
                )
                rows = session.execute(query).all()
                if not rows:
                    break
                images, kept = [], []
                for row in rows:
                    try:
                        blob = blobs.get(row.blob_key)
                        images.append(decode_image(blob, settings.max_image_pixels))
                        kept.append(row)
                    except (OSError, ValueError) as exc:
                        tqdm.write(f"image {row.id}: cannot re-embed ({exc})")
                        failed.append(row.id)
                done += _store(session, kept, encoder.embed(images), encoder.model_id)
                bar.update(len(rows))
    engine.dispose()
    print(f"re-embedded {done} images with {encoder.model_id}; {len(failed)} failed")
    return 1 if failed else 0
