"""Catalogue writes and reads: one SQL transaction per request, shards updated after commit."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.db.memberships import add_memberships, drop_memberships
from app.db.models import Product, ReferenceImage, ReferenceView, ShardVersion
from app.encoder.views import all_vector_ids, vector_id
from app.index.shards import ShardSet
from app.storage.blobs import BlobStore

log = logging.getLogger(__name__)


class ProductExists(Exception):
    pass


class NotFound(Exception):
    pass


class WriteConflict(Exception):
    pass


@dataclass(frozen=True)
class NewImage:
    """An upload that decoded and embedded fine; nothing is written before all of them do."""

    data: bytes
    sha256: str
    image_format: str
    width: int
    height: int
    embedding: np.ndarray
    # Derived vectors (degraded views) and their view codes, in the same order.
    view_embeddings: np.ndarray | None = None
    view_codes: tuple[int, ...] = ()

    def vectors(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The vector ids and vectors this image puts into the index: itself, then its views."""
        codes = np.array((0, *self.view_codes), dtype=np.int64)
        rows = [self.embedding[None, :]]
        if self.view_codes and self.view_embeddings is not None:
            rows.append(self.view_embeddings)
        return vector_id(image_id, codes), np.concatenate(rows).astype(np.float32)


@dataclass(frozen=True)
class Match:
    sku: str
    name: str


def bump_shard_versions(session: Session, model_id: str, shards: Iterable[int]) -> dict[int, int]:
    """Upsert version+1 per shard, in a fixed order so concurrent writers cannot deadlock."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    versions = {}
    for shard in sorted(set(shards)):
        stmt = dialect.insert(ShardVersion).values(model_id=model_id, shard=shard, version=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=["model_id", "shard"], set_={"version": ShardVersion.version + 1}
        ).returning(ShardVersion.version)
        versions[shard] = int(session.execute(stmt).scalar_one())
    return versions


class Catalog:
    def __init__(
        self,
        session_factory: Callable[[], Session],
        blobs: BlobStore,
        shards: ShardSet,
        shard_capacity: int,
    ) -> None:
        self.session_factory = session_factory
        self.blobs = blobs
        self.shards = shards
        self.shard_capacity = shard_capacity

    @property
    def model_id(self) -> str:
        return self.shards.model_id

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
            add_memberships(session, product.id, catalogues)
            self._insert_rows(session, product, fresh, images, existing={})
            return self._get(session, sku)

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
    ) -> tuple[list[int], int]:
        rows = {
            sha: ReferenceImage(
                product_id=product.id,
                sha256=sha,
                blob_key=sha,
                image_format=image.image_format,
                width=image.width,
                height=image.height,
                embedding=image.embedding.astype(np.float32).tobytes(),
                model_id=self.model_id,
                shard=0,
                views=",".join(str(c) for c in image.view_codes),
            )
            for sha, image in fresh.items()
        }
        session.add_all(rows.values())
        try:
            session.flush()
            for sha, row in rows.items():
                row.shard = (row.id - 1) // self.shard_capacity
                session.add_all(view_rows(row.id, row.shard, self.model_id, fresh[sha]))
            session.flush()
            versions = bump_shard_versions(session, self.model_id, (r.shard for r in rows.values()))
            session.commit()
        except IntegrityError as exc:
            session.rollback()
            raise WriteConflict(product.sku) from exc
        by_shard: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        for sha, row in rows.items():
            by_shard[row.shard].append(fresh[sha].vectors(row.id))
        self._after_commit(
            lambda: [
                self.shards.apply_added(
                    shard,
                    versions[shard],
                    np.concatenate([ids for ids, _ in items]),
                    np.concatenate([vectors for _, vectors in items]),
                )
                for shard, items in by_shard.items()
            ]
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
            # DELETE ... RETURNING: the rows removed are exactly the rows reported, even if an
            # add or a reindex committed since we looked.
            refs = self._delete_returning(session, ReferenceImage.product_id == product_id)
            drop_memberships(session, product_id)
            session.execute(delete(Product).where(Product.id == product_id))
            self._commit_removal(session, refs)

    def delete_image(self, sku: str, image_id: int) -> None:
        with self.session_factory() as session:
            owner = select(Product.id).where(Product.sku == sku).scalar_subquery()
            refs = self._delete_returning(
                session, (ReferenceImage.id == image_id) & (ReferenceImage.product_id == owner)
            )
            if not refs:
                raise NotFound(f"{sku}/{image_id}")
            self._commit_removal(session, refs)

    @staticmethod
    def _delete_returning(session: Session, where: Any) -> list[Any]:
        # Views first and explicitly: the foreign key cascades too, but this way the removal
        # does not depend on SQLite's foreign_keys pragma being on for every connection.
        image_ids = select(ReferenceImage.id).where(where).scalar_subquery()
        session.execute(
            delete(ReferenceView)
            .where(ReferenceView.image_id.in_(image_ids))
            .execution_options(synchronize_session=False)
        )
        statement = (
            delete(ReferenceImage)
            .where(where)
            .returning(ReferenceImage.id, ReferenceImage.model_id, ReferenceImage.shard)
            .execution_options(synchronize_session=False)
        )
        return list(session.execute(statement).all())

    def _commit_removal(self, session: Session, refs: list[Any]) -> None:
        by_model: dict[str, set[int]] = defaultdict(set)
        for _, model_id, shard in refs:
            by_model[model_id].add(shard)
        versions = {
            model_id: bump_shard_versions(session, model_id, shards)
            for model_id, shards in sorted(by_model.items())
        }
        session.commit()
        mine = versions.get(self.model_id, {})
        self._after_commit(
            lambda: [
                self.shards.apply_removed(
                    shard,
                    version,
                    all_vector_ids(i for i, m, s in refs if m == self.model_id and s == shard),
                )
                for shard, version in mine.items()
            ]
        )

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
            select(Product).where(Product.sku == sku).options(selectinload(Product.images))
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

    def matches_for(self, image_ids: Iterable[int]) -> dict[int, Match]:
        """Look search hits up in SQL: ids deleted elsewhere since the shard loaded drop out.

        Takes image ids, not vector ids (see `app.encoder.views.image_of`)."""
        wanted = sorted({int(i) for i in image_ids if i >= 0})
        if not wanted:
            return {}
        with self.session_factory() as session:
            rows = session.execute(
                select(ReferenceImage.id, Product.sku, Product.name)
                .join(Product)
                .where(ReferenceImage.id.in_(wanted), ReferenceImage.model_id == self.model_id)
            ).all()
        return {row[0]: Match(row[1], row[2]) for row in rows}


def view_rows(image_id: int, shard: int, model_id: str, image: NewImage) -> list[ReferenceView]:
    if not image.view_codes or image.view_embeddings is None:
        return []
    return [
        ReferenceView(
            image_id=image_id,
            code=code,
            embedding=np.asarray(vector, dtype=np.float32).tobytes(),
            model_id=model_id,
            shard=shard,
        )
        for code, vector in zip(image.view_codes, image.view_embeddings, strict=True)
    ]
