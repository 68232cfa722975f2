"""`retailklip reindex`: embed every stored reference image with the configured model.

New vectors are written beside those of other models (one set per image and model), so
replicas still serving another model keep answering from theirs while this runs; replicas on
this model report not ready until every image has a vector of it (docs/DEPLOYMENT.md)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Row, and_, delete, func, or_, select
from sqlalchemy.orm import Session
from tqdm import tqdm

from app.catalogue.products import embedding_rows, shard_of
from app.db import changelog
from app.db.migrate import open_database
from app.db.session import make_session_factory
from app.db.tables import Embedding, Product, ReferenceImage
from app.encoder.decode import decode_photo
from app.encoder.loading import load_service_encoder
from app.encoder.preprocess import whole_photo
from app.encoder.views import degraded_views, served_views, view_code
from app.index.vector_ids import vector_id
from app.settings import Settings
from app.storage.blobs import FileBlobStore


def _store(
    session: Session,
    rows: Sequence[Row[int, int, str]],  # (id, product_id, blob_key)
    vectors: np.ndarray,
    model_id: str,
    codes: tuple[int, ...],
    capacity: int,
) -> int:
    """Write one batch's vectors for `model_id` in one transaction; images deleted meanwhile
    are skipped. `vectors` holds, per row, the image's vector then one per view code."""
    if not rows:
        return 0
    # Lock the products (in id order, as writers do): a concurrent delete waits for this
    # commit, and then removes, and logs, the rows written here too.
    product_ids = sorted({row.product_id for row in rows})
    session.execute(
        select(Product.id).where(Product.id.in_(product_ids)).order_by(Product.id).with_for_update()
    )
    alive = set(
        session.scalars(
            select(ReferenceImage.id).where(ReferenceImage.id.in_([r.id for r in rows]))
        )
    )
    per_row = 1 + len(codes)
    kept = [(i, row) for i, row in enumerate(rows) if row.id in alive]
    # What this model had of these images is replaced: one DELETE, its ids logged with the adds.
    replaced = session.execute(
        delete(Embedding)
        .where(Embedding.model_id == model_id, Embedding.image_id.in_([r.id for _, r in kept]))
        .returning(Embedding.image_id, Embedding.code)
    ).all()
    touched = vector_id(*np.array(replaced, np.int64).reshape(-1, 2).T).tolist()
    for i, row in kept:
        own = vectors[i * per_row : (i + 1) * per_row]
        session.add_all(embedding_rows(row.id, shard_of(row.id, capacity), model_id, own, codes))
        touched += vector_id(row.id, np.array((0, *codes))).tolist()
    session.flush()
    if touched:
        changelog.append(session, model_id, "add", np.unique(np.array(touched, np.int64)))
    session.commit()
    return len(alive)


def run_reindex(settings: Settings, batch_size: int = 32) -> int:
    """Idempotent and resumable: only images without a vector of this model, or with other
    degraded views than configured, are embedded, a batch per commit; other models' vectors
    are never touched. Run it again after a rolling switch to cover images that replicas
    still on the old model registered meanwhile."""
    engine = open_database(settings.storage.database_url, settings.storage.auto_migrate)
    session_factory = make_session_factory(engine)
    # The encoder the service runs (same runtime, same vectors as a registration would store):
    # ONNX Runtime from the cached graph on a CPU host, without loading PyTorch.
    choice = settings.model_choice
    encoder = load_service_encoder(choice)
    blobs = FileBlobStore(settings.storage.blob_dir)
    views = served_views(choice.reference_views, encoder.preprocess.reference_views)
    codes = tuple(view_code(v) for v in views)
    signature = ",".join(str(c) for c in codes)
    own = and_(
        Embedding.image_id == ReferenceImage.id,
        Embedding.model_id == encoder.model_id,
        Embedding.code == 0,
    )
    stale = or_(Embedding.image_id.is_(None), Embedding.views != signature)
    with session_factory() as session:
        todo = (
            session.scalar(
                select(func.count())
                .select_from(ReferenceImage)
                .outerjoin(Embedding, own)
                .where(stale)
            )
            or 0
        )
    failed: list[int] = []
    done = 0
    with tqdm(total=todo, desc=f"embedding with {encoder.model_id}", unit="img") as bar:
        while True:
            with session_factory() as session:
                query = (
                    select(ReferenceImage.id, ReferenceImage.product_id, ReferenceImage.blob_key)
                    .outerjoin(Embedding, own)
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
                        # At the scale registration decodes it: the same vectors.
                        image = decode_photo(
                            blob, settings.limits.max_image_pixels, whole_photo(encoder.preprocess)
                        ).image
                        images += [image, *degraded_views(image, views)]
                        kept.append(row)
                    except (OSError, ValueError) as exc:
                        tqdm.write(f"image {row.id}: cannot re-embed ({exc})")
                        failed.append(row.id)
                vectors = encoder.embed(images) if images else np.zeros((0, encoder.embed_dim))
                done += _store(
                    session, kept, vectors, encoder.model_id, codes, settings.sync.shard_capacity
                )
                bar.update(len(rows))
        with session_factory() as session:
            missing = changelog.missing_images(session, encoder.model_id)
    engine.dispose()
    print(
        f"re-embedded {done} images with {encoder.model_id}; {len(failed)} failed; "
        f"{missing} images without a vector of this model"
    )
    return 1 if failed else 0
