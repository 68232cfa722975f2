"""`retailklip reindex`: re-embed every stored reference image with the configured model."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Row, delete, func, or_, select, update
from sqlalchemy.orm import Session
from tqdm import tqdm

from app.catalog import bump_shard_versions
from app.db.migrate import open_database
from app.db.models import ReferenceImage, ReferenceView
from app.db.session import make_session_factory
from app.encoder.preprocess import decode_image
from app.encoder.runtime import load_encoder
from app.encoder.views import degraded_views, view_code
from app.settings import Settings
from app.storage.blobs import FileBlobStore


def _store(
    session: Session,
    rows: list[Row],
    vectors: np.ndarray,
    model_id: str,
    codes: tuple[int, ...],
) -> int:
    """Swap embeddings (and derived views) in one transaction; a row deleted or re-embedded
    meanwhile is skipped. `vectors` holds, per row, the image's vector then one per view code."""
    touched: dict[str, set[int]] = {}
    updated = 0
    per_row = 1 + len(codes)
    signature = ",".join(str(c) for c in codes)
    for i, row in enumerate(rows):
        own, views = vectors[i * per_row], vectors[i * per_row + 1 : (i + 1) * per_row]
        result = session.execute(
            update(ReferenceImage)
            .where(
                ReferenceImage.id == row.id,
                ReferenceImage.model_id == row.model_id,
                ReferenceImage.views == row.views,
            )
            .values(
                embedding=np.asarray(own, dtype=np.float32).tobytes(),
                model_id=model_id,
                views=signature,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:
            session.execute(delete(ReferenceView).where(ReferenceView.image_id == row.id))
            session.add_all(
                ReferenceView(
                    image_id=row.id,
                    code=code,
                    embedding=np.asarray(vector, dtype=np.float32).tobytes(),
                    model_id=model_id,
                    shard=row.shard,
                )
                for code, vector in zip(codes, views, strict=True)
            )
            touched.setdefault(row.model_id, set()).add(row.shard)
            touched.setdefault(model_id, set()).add(row.shard)
            updated += 1
    for touched_model, shards in sorted(touched.items()):
        bump_shard_versions(session, touched_model, shards)
    session.commit()
    return updated


def run_reindex(settings: Settings, batch_size: int = 32) -> int:
    """Idempotent and resumable: only rows made by another model, or with other degraded views
    than configured, are touched, a batch per commit.

    Running services pick the new embeddings up through the shard versions bumped here.
    """
    engine = open_database(settings.resolved_database_url, settings.auto_migrate)
    session_factory = make_session_factory(engine)
    encoder = load_encoder(settings.model, settings.device)
    blobs = FileBlobStore(settings.resolved_blob_dir)
    views = settings.resolved_reference_views(encoder.preprocess)
    codes = tuple(view_code(v) for v in views)
    signature = ",".join(str(c) for c in codes)
    stale = or_(ReferenceImage.model_id != encoder.model_id, ReferenceImage.views != signature)
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
                        ReferenceImage.views,
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
                        image = decode_image(blob, settings.max_image_pixels)
                        images += [image, *degraded_views(image, views)]
                        kept.append(row)
                    except (OSError, ValueError) as exc:
                        tqdm.write(f"image {row.id}: cannot re-embed ({exc})")
                        failed.append(row.id)
                done += _store(session, kept, encoder.embed(images), encoder.model_id, codes)
                bar.update(len(rows))
    engine.dispose()
    print(f"re-embedded {done} images with {encoder.model_id}; {len(failed)} failed")
    return 1 if failed else 0
