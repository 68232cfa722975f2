"""`retailklip reindex`: re-embed every stored reference image with the configured model."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select
from tqdm import tqdm

from app.catalog import bump_shard_versions
from app.db.migrate import open_database
from app.db.models import ReferenceImage
from app.db.session import make_session_factory
from app.encoder.preprocess import decode_image
from app.encoder.runtime import load_encoder
from app.settings import Settings
from app.storage.blobs import FileBlobStore


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
                query = select(ReferenceImage).where(stale).order_by(ReferenceImage.id)
                if failed:
                    query = query.where(ReferenceImage.id.not_in(failed))
                rows = session.scalars(query.limit(batch_size)).all()
                if not rows:
                    break
                images, kept = [], []
                for row in rows:
                    try:
                        images.append(
                            decode_image(blobs.get(row.blob_key), settings.max_image_pixels)
                        )
                        kept.append(row)
                    except (OSError, ValueError) as exc:
                        tqdm.write(f"image {row.id}: cannot re-embed ({exc})")
                        failed.append(row.id)
                vectors = encoder.embed(images)
                touched: dict[str, set[int]] = {}
                for row, vector in zip(kept, vectors, strict=True):
                    touched.setdefault(row.model_id, set()).add(row.shard)
                    touched.setdefault(encoder.model_id, set()).add(row.shard)
                    row.embedding = np.asarray(vector, dtype=np.float32).tobytes()
                    row.model_id = encoder.model_id
                session.flush()
                for model_id, shards in sorted(touched.items()):
                    bump_shard_versions(session, model_id, shards)
                session.commit()
                done += len(kept)
                bar.update(len(rows))
    engine.dispose()
    print(f"re-embedded {done} images with {encoder.model_id}; {len(failed)} failed")
    return 1 if failed else 0
