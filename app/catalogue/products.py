"""The product repository: products, their reference images and vectors in SQL.

One SQL transaction per request. Reads and writes return plain records (`ProductRecord`,
`ImagesRecord`), never ORM rows. A write's `answer` runs inside its transaction, on the record
the write produced, before the commit: whatever the caller builds from it (the HTTP response,
encoded) either succeeds with the write or undoes it, so a client never sees an error for a
write that was kept. A committed write is announced to `CommittedWrites` (the index's log
follower, wired by the app), so this replica searches it at once; the repository itself knows
no index.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import numpy as np
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.catalogue.barcodes import attach, detach, holders
from app.catalogue.errors import ConcurrentWrite, ImageNotFound, ProductExists, ProductNotFound
from app.catalogue.memberships import add_memberships, drop_memberships
from app.db import changelog
from app.db.tables import Embedding, Product, ReferenceImage
from app.index.stored_vectors import decode_vectors, encode_vector
from app.index.vector_ids import vector_id
from app.storage.blobs import BlobStore
from app.storage.uploaded import UploadedImage

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ImageRecord:
    id: int
    sha256: str


@dataclass(frozen=True)
class ProductRecord:
    sku: str
    name: str
    metadata: dict[str, Any]
    images: tuple[ImageRecord, ...]  # oldest first
    catalogues: tuple[str, ...]  # by name
    barcodes: tuple[str, ...]  # GTIN-14, in order
    created_at: datetime  # UTC
    updated_at: datetime

    @property
    def image_ids(self) -> list[int]:
        return [image.id for image in self.images]

    @classmethod
    def of(cls, product: Product) -> ProductRecord:
        """Read inside the session that loaded `product` (its images and catalogues)."""
        return cls(
            sku=product.sku,
            name=product.name,
            metadata=product.metadata_,
            images=tuple(ImageRecord(i.id, i.sha256) for i in product.images),
            catalogues=tuple(sorted(link.catalogue for link in product.catalogue_links)),
            barcodes=tuple(sorted(link.gtin for link in product.barcode_links)),
            created_at=_utc(product.created_at),
            updated_at=_utc(product.updated_at),
        )


def _utc(moment: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ImagesRecord:
    """What adding images to a product did: one id per upload, in order (an upload whose
    bytes the product already had gets the stored id), and how many were new."""

    sku: str
    image_ids: list[int]
    added: int


def as_is(record: T) -> T:
    """The default answer of a write: its record."""
    return record


# A step run first in an add's transaction (a review item claimed: the photo becomes one
# product's reference, exactly once); it raises to refuse the write.
FirstStep = Callable[[Session], object]


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
        answer: Callable[[ProductRecord], T] = as_is,  # type: ignore[assignment]
        barcodes: Sequence[str] = (),
    ) -> T:
        """The new product; `answer(record)` runs before the commit and its result is returned
        (it raising undoes the write). Raises ProductExists, BarcodeTaken."""
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
            attach(session, product, barcodes)
            answered: list[T] = []
            try:
                self._insert_rows(
                    session,
                    product,
                    fresh,
                    images,
                    existing={},
                    before_commit=lambda ids, n: answered.append(answer(self._get(session, sku))),
                )
            except ConcurrentWrite as exc:  # another request's product of this sku won
                raise ProductExists(sku) from exc
            return answered[0]

    def add_images(
        self,
        sku: str,
        images: list[NewImage],
        answer: Callable[[ImagesRecord], T] = as_is,  # type: ignore[assignment]
        first: FirstStep | None = None,
        barcodes: Sequence[str] = (),
    ) -> T:
        """Images added to a product (and `barcodes`: a confirmed photo's codes); `answer` as
        for `create_product`. `first` runs before anything else in the transaction. Raises
        ProductNotFound, ConcurrentWrite, BarcodeTaken."""
        with self.session_factory() as session:
            if first is not None:
                first(session)  # SQLite: a write first takes the lock, before any read
            # Row lock (PostgreSQL): an add and a delete of one product take turns.
            product = session.scalar(select(Product).where(Product.sku == sku).with_for_update())
            if product is None:
                raise ProductNotFound(sku)
            attach(session, product, barcodes)
            existing = dict(
                session.execute(
                    select(ReferenceImage.sha256, ReferenceImage.id).where(
                        ReferenceImage.product_id == product.id
                    )
                ).all()
            )
            fresh = self._store_blobs(images, existing)
            answered: list[T] = []

            def respond(ids: list[int], added: int) -> None:
                answered.append(answer(ImagesRecord(sku, ids, added)))

            self._insert_rows(session, product, fresh, images, existing, before_commit=respond)
            return answered[0]

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
        before_commit: Callable[[list[int], int], object],
    ) -> None:
        """Rows for the fresh images and their vectors, `before_commit(image ids per upload,
        how many new)` (the answer), the log entry, the commit, then the local shards."""
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
            ids_by_sha = {**existing, **{sha: row.id for sha, row in rows.items()}}
            # Before the log append, which holds other writers until commit.
            before_commit([ids_by_sha[image.sha256] for image in images], len(rows))
            seq = None
            if parts:
                all_ids = np.concatenate([ids for _, ids, _ in parts])
                seq = changelog.append(session, self.model_id, "add", all_ids)
            session.commit()
        except IntegrityError as exc:
            session.rollback()
            raise ConcurrentWrite(product.sku) from exc
        if seq is not None:
            self._after_commit(
                lambda: self.committed.apply_added(
                    np.concatenate([shards for shards, _, _ in parts]),
                    seq,
                    np.concatenate([ids for _, ids, _ in parts]),
                    np.concatenate([vectors for _, _, vectors in parts]),
                )
            )

    def delete_product(self, sku: str) -> None:
        with self.session_factory() as session:
            product_id = session.scalar(
                select(Product.id).where(Product.sku == sku).with_for_update()
            )
            if product_id is None:
                raise ProductNotFound(sku)
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
                raise ImageNotFound(sku, image_id)
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
    def _get(self, session: Session, sku: str) -> ProductRecord:
        product = session.scalar(
            select(Product)
            .where(Product.sku == sku)
            .options(
                selectinload(Product.images),
                selectinload(Product.catalogue_links),
                selectinload(Product.barcode_links),
            )
            # Fresh collections even when this session wrote the product (create's answer).
            .execution_options(populate_existing=True)
        )
        if product is None:
            raise ProductNotFound(sku)
        return ProductRecord.of(product)

    def get_product(self, sku: str) -> ProductRecord:
        with self.session_factory() as session:
            return self._get(session, sku)

    def list_products(self, limit: int, offset: int) -> tuple[list[ProductRecord], int]:
        with self.session_factory() as session:
            total = session.scalar(select(func.count()).select_from(Product)) or 0
            products = session.scalars(
                select(Product)
                .order_by(Product.id)
                .limit(limit)
                .offset(offset)
                .options(selectinload(Product.images), selectinload(Product.catalogue_links))
            ).all()
            return [ProductRecord.of(p) for p in products], total

    def vectors_of(self, skus: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per existing sku: (image ids, their own vectors under this model) of its references,
        stored order; one query for all of them. Missing skus are left out."""
        with self.session_factory() as session:
            products = dict(
                session.execute(select(Product.sku, Product.id).where(Product.sku.in_(skus))).all()
            )
            rows = session.execute(
                select(ReferenceImage.product_id, ReferenceImage.id, Embedding.vector)
                .join(Embedding, Embedding.image_id == ReferenceImage.id)
                .where(
                    ReferenceImage.product_id.in_(list(products.values())),
                    Embedding.model_id == self.model_id,
                    Embedding.code == 0,
                )
                .order_by(ReferenceImage.id)
            ).all()
        by_product: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        for product_id, image_id, vector in rows:
            by_product[product_id].append((image_id, vector))
        found = {}
        for sku, product_id in products.items():
            own = by_product.get(product_id, [])
            if not own:
                found[sku] = (np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
                continue
            ids = np.array([image_id for image_id, _ in own], dtype=np.int64)
            dim = len(own[0][1]) // 2  # float16
            found[sku] = (ids, decode_vectors([vector for _, vector in own], dim))
        return found

    def set_barcodes(
        self,
        sku: str,
        added: Sequence[str],
        removed: Sequence[str],
        answer: Callable[[ProductRecord], T] = as_is,  # type: ignore[assignment]
    ) -> T:
        """Codes given to and taken from a product, one transaction; raises ProductNotFound,
        BarcodeTaken, BarcodeNotFound."""
        with self.session_factory() as session:
            product = session.scalar(select(Product).where(Product.sku == sku).with_for_update())
            if product is None:
                raise ProductNotFound(sku)
            for gtin in removed:
                detach(session, product.id, sku, gtin)
            session.expire(product, ["barcode_links"])
            attach(session, product, added)
            product.updated_at = datetime.now(UTC)
            session.flush()
            answered = answer(self._get(session, sku))
            session.commit()
            return answered

    def find_by_barcode(self, gtin: str) -> ProductRecord | None:
        with self.session_factory() as session:
            sku = holders(session, [gtin]).get(gtin)
            return None if sku is None else self._get(session, sku)

    def metadata_of(self, skus: list[str]) -> dict[str, dict[str, Any]]:
        """sku -> metadata of the products that exist; one query."""
        with self.session_factory() as session:
            rows = session.execute(
                select(Product.sku, Product.metadata_).where(Product.sku.in_(skus))
            ).all()
        return {sku: dict(metadata) for sku, metadata in rows}

    def owners_of(self, image_ids: list[int]) -> dict[int, tuple[str, str]]:
        """Image id -> (sku, name) of the images that exist; run for every classification."""
        with self.session_factory() as session:
            # Core, not ORM execution: half the cost of this per-request query.
            rows = session.connection().execute(MATCHES, {"ids": image_ids}).all()
        return {row[0]: (row[1], row[2]) for row in rows}
