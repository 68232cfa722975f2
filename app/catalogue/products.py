"""The product repository: products, their reference images and vectors in SQL.

One SQL transaction per request. A committed write is announced to `CommittedWrites` (the
index's log follower, wired by the app), so this replica searches it at once; the repository
itself knows no index.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.catalogue.memberships import add_memberships, drop_memberships
from app.db import changelog
from app.db.tables import Embedding, Product, ReferenceImage
from app.index.stored_vectors import decode_vectors, encode_vector
from app.index.vector_ids import vector_id
from app.storage.blobs import BlobStore
from app.storage.uploaded import UploadedImage

log = logging.getLogger(__name__)


class ProductExists(Exception):
    pass


class NotFound(Exception):
    pass


class WriteConflict(Exception):
    pass


@dataclass(frozen=True)
class NewImage(UploadedImage):
    """An upload that decoded and embedded fine; nothing is written before all of them do."""

    embedding: np.ndarray
    # Derived vectors (degraded views) and their view codes, in the same order.
    view_embeddings: np.ndarray | None = None
    view_codes: tuple[int, ...] = ()

    @classmethod
    def embedded(
        cls,
        upload: UploadedImage,
        embedding: np.ndarray,
        view_embeddings: np.ndarray | None = None,
        view_codes: tuple[int, ...] = (),
    ) -> NewImage:
        return cls(
            upload.data,
            upload.sha256,
            upload.image_format,
            upload.width,
            upload.height,
            embedding,
            view_embeddings,
            view_codes,
        )

    def vectors(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The vector ids and vectors this image puts into the index: itself, then its views."""
        codes = np.array((0, *self.view_codes), dtype=np.int64)
        rows = [self.embedding[None, :]]
        if self.view_codes and self.view_embeddings is not None:
            rows.append(self.view_embeddings)
        return vector_id(image_id, codes), np.concatenate(rows).astype(np.float32)


class CommittedWrites(Protocol):
    """Told of every committed write's vectors, with the write's change-log entry."""

    def apply_added(
        self, shard_nos: int | np.ndarray, seq: int, ids: np.ndarray, vectors: np.ndarray
    ) -> None: ...

    def apply_removed(self, seq: int, ids: np.ndarray) -> None: ...


# Search hits -> their products: run for every classification.
MATCHES = (
    select(ReferenceImage.id, Product.sku, Product.name)
    .join(Product)
    .where(ReferenceImage.id.in_(bindparam("ids", expanding=True)))
)


def shard_of(image_id: int, capacity: int) -> int:
    return (image_id - 1) // capacity


def embedding_rows(
    image_id: int, shard: int, model_id: str, vectors: np.ndarray, view_codes: Sequence[int]
) -> list[Embedding]:
    """One image's rows for one model: its own vector (code 0, naming its views), then one per
    degraded view; `vectors` holds them in that order. Registration and reindex both write these."""
    signature = ",".join(str(c) for c in view_codes)
    return [
        Embedding(
            model_id=model_id,
            image_id=image_id,
            code=code,
            shard=shard,
            vector=encode_vector(vector),
            views=signature if code == 0 else "",
        )
        for code, vector in zip((0, *view_codes), vectors, strict=True)
    ]


class ProductStore:
    def __init__(
        self,
        session_factory: Callable[[], Session],
        blobs: BlobStore,
        model_id: str,
        shard_capacity: int,
        committed: CommittedWrites,
    ) -> None:
        self.session_factory = session_factory
        self.blobs = blobs
        self.model_id = model_id  # the model whose vectors writes carry
        self.shard_capacity = shard_capacity
        self.committed = committed

    # ---- writes --------------------------------------------------------------------------
    def create_product(
        self,
        sku: str,
        name: str,
        metadata: dict[str, Any],
        images: list[NewImage],
        catalogues: Sequence[str] = (),
    ) -> Product:
        fresh = self._store_blobs(images, existing={})
        with self.session_factory() as session:
            if session.scalar(select(Product.id).where(Product.sku == sku)) is not None:
                raise ProductExists(sku)
            product = Product(sku=sku, name=name, metadata_=metadata)
            session.add(product)
            try:
                session.flush()
            except IntegrityError as exc:
                raise ProductExists(sku) from exc
            # The images' log entry tells cached scopes; an image-less product changes none.
            add_memberships(session, product.id, catalogues, bump=False)
            # The answer is read inside the transaction: a read after commit could fail (database
            # gone) and turn a committed product into an error the client would retry.
            created: list[Product] = []
            self._insert_rows(
                session,
                product,
                fresh,
                images,
                existing={},
                before_commit=lambda: created.append(self._get(session, sku)),
            )
            return created[0]

    def add_images(self, sku: str, images: list[NewImage]) -> tuple[list[int], int]:
        """The image id of every upload (a duplicate gets the stored id), and how many are new."""
        with self.session_factory() as session:
            # Row lock (PostgreSQL): an add and a delete of one product take turns.
            product = session.scalar(select(Product).where(Product.sku == sku).with_for_update())
            if product is None:
                raise NotFound(sku)
            existing = dict(
                session.execute(
                    select(ReferenceImage.sha256, ReferenceImage.id).where(
                        ReferenceImage.product_id == product.id
                    )
                ).all()
            )
            fresh = self._store_blobs(images, existing)
            return self._insert_rows(session, product, fresh, images, existing)

    def _store_blobs(self, images: list[NewImage], existing: dict[str, int]) -> dict[str, NewImage]:
        """Bytes go to the blob store before any row refers to them (and before SQLite's write
        lock is taken, so other writers do not wait on these fsyncs)."""
        fresh: dict[str, NewImage] = {}
        for image in images:
            if image.sha256 not in existing and image.sha256 not in fresh:
                self.blobs.put(image.data)
                fresh[image.sha256] = image
        return fresh

    def _insert_rows(
        self,
        session: Session,
        product: Product,
        fresh: dict[str, NewImage],
        images: list[NewImage],
        existing: dict[str, int],
        before_commit: Callable[[], object] | None = None,
    ) -> tuple[list[int], int]:
        rows = {
            sha: ReferenceImage(
                product_id=product.id,
                sha256=sha,
                blob_key=sha,
                image_format=image.image_format,
                width=image.width,
                height=image.height,
            )
            for sha, image in fresh.items()
        }
        session.add_all(rows.values())
        try:
            session.flush()
            parts = []  # (shard per vector, vector ids, vectors)
            for sha, row in rows.items():
                shard = shard_of(row.id, self.shard_capacity)
                image = fresh[sha]
                ids, vectors = image.vectors(row.id)
                session.add_all(
                    embedding_rows(row.id, shard, self.model_id, vectors, image.view_codes)
                )
                parts.append((np.full(len(ids), shard, np.int64), ids, vectors))
            session.flush()
            if before_commit is not None:
                before_commit()  # before the log append, which holds other writers until commit
            seq = None
            if parts:
                all_ids = np.concatenate([ids for _, ids, _ in parts])
                seq = changelog.append(session, self.model_id, "add", all_ids)
            session.commit()
        except IntegrityError as exc:
            session.rollback()
            raise WriteConflict(product.sku) from exc
        if seq is not None:
            self._after_commit(
                lambda: self.committed.apply_added(
                    np.concatenate([shards for shards, _, _ in parts]),
                    seq,
                    np.concatenate([ids for _, ids, _ in parts]),
                    np.concatenate([vectors for _, _, vectors in parts]),
                )
            )
        ids_by_sha = {**existing, **{sha: row.id for sha, row in rows.items()}}
        return [ids_by_sha[image.sha256] for image in images], len(rows)

    def delete_product(self, sku: str) -> None:
        with self.session_factory() as session:
            product_id = session.scalar(
                select(Product.id).where(Product.sku == sku).with_for_update()
            )
            if product_id is None:
                raise NotFound(sku)
            removed = self._delete_returning(session, ReferenceImage.product_id == product_id)
            # With images, their log entry tells cached scopes; without, the epoch must (the
            # catalogue may be empty now, and unknown).
            drop_memberships(session, product_id, bump=removed is None)
            session.execute(delete(Product).where(Product.id == product_id))
            self._commit_removal(session, removed or {})

    def delete_image(self, sku: str, image_id: int) -> None:
        with self.session_factory() as session:
            # Row lock (PostgreSQL), as for adds: a reindex writing this product's vectors
            # finishes first, so its rows are among those reported removed below.
            product_id = session.scalar(
                select(Product.id).where(Product.sku == sku).with_for_update()
            )
            where = (ReferenceImage.id == image_id) & (ReferenceImage.product_id == product_id)
            removed = self._delete_returning(session, where)
            if removed is None:
                raise NotFound(f"{sku}/{image_id}")
            self._commit_removal(session, removed)

    @staticmethod
    def _delete_returning(session: Session, where: Any) -> dict[str, np.ndarray] | None:
        """Delete the images matching `where` and every model's vectors of them; returns the
        vector ids removed per model (DELETE ... RETURNING: exactly what went, even if an add
        or a reindex committed since we looked), or None if no image matched."""
        image_ids = select(ReferenceImage.id).where(where).scalar_subquery()
        # Vectors first and explicitly: the foreign key cascades too, but then nothing would
        # tell us which vectors went, and SQLite only cascades with its foreign_keys pragma.
        gone = session.execute(
            delete(Embedding)
            .where(Embedding.image_id.in_(image_ids))
            .returning(Embedding.model_id, Embedding.image_id, Embedding.code)
            .execution_options(synchronize_session=False)
        ).all()
        images = session.execute(
            delete(ReferenceImage)
            .where(where)
            .returning(ReferenceImage.id)
            .execution_options(synchronize_session=False)
        ).all()
        if not images:
            return None
        by_model: dict[str, list[int]] = defaultdict(list)
        for model_id, image_id, code in gone:
            by_model[model_id].append(int(vector_id(image_id, code)))
        return {model: np.array(ids, np.int64) for model, ids in by_model.items()}

    def _commit_removal(self, session: Session, removed: dict[str, np.ndarray]) -> None:
        seqs = changelog.append_many(session, {m: ("remove", ids) for m, ids in removed.items()})
        session.commit()
        if self.model_id in seqs:
            seq, ids = seqs[self.model_id], removed[self.model_id]
            self._after_commit(lambda: self.committed.apply_removed(seq, ids))

    @staticmethod
    def _after_commit(apply: Callable[[], object]) -> None:
        """The write is durable already; a failure here only delays it until the next sync."""
        try:
            apply()
        except Exception:
            log.exception("applying a committed write to the local shards failed")

    # ---- reads ---------------------------------------------------------------------------
    def _get(self, session: Session, sku: str) -> Product:
        product = session.scalar(
            select(Product)
            .where(Product.sku == sku)
            .options(selectinload(Product.images))
            # Fresh collections even when this session wrote the product (create's answer).
            .execution_options(populate_existing=True)
        )
        if product is None:
            raise NotFound(sku)
        return product

    def get_product(self, sku: str) -> Product:
        with self.session_factory() as session:
            return self._get(session, sku)

    def list_products(self, limit: int, offset: int) -> tuple[list[Product], int]:
        with self.session_factory() as session:
            total = session.scalar(select(func.count()).select_from(Product)) or 0
            products = session.scalars(
                select(Product)
                .order_by(Product.id)
                .limit(limit)
                .offset(offset)
                .options(selectinload(Product.images))
            ).all()
            return list(products), total

    def vectors_of(self, sku: str) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, their own vectors under this model) of a product's references, stored
        order; raises NotFound."""
        with self.session_factory() as session:
            product_id = session.scalar(select(Product.id).where(Product.sku == sku))
            if product_id is None:
                raise NotFound(sku)
            rows = session.execute(
                select(ReferenceImage.id, Embedding.vector)
                .join(Embedding, Embedding.image_id == ReferenceImage.id)
                .where(
                    ReferenceImage.product_id == product_id,
                    Embedding.model_id == self.model_id,
                    Embedding.code == 0,
                )
                .order_by(ReferenceImage.id)
            ).all()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        dim = len(rows[0][1]) // 2  # float16
        return ids, decode_vectors([r[1] for r in rows], dim)

    def owners_of(self, image_ids: list[int]) -> dict[int, tuple[str, str]]:
        """Image id -> (sku, name) of the images that exist; run for every classification."""
        with self.session_factory() as session:
            # Core, not ORM execution: half the cost of this per-request query.
            rows = session.connection().execute(MATCHES, {"ids": image_ids}).all()
        return {row[0]: (row[1], row[2]) for row in rows}
