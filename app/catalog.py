"""Catalogue writes and reads: one SQL transaction per request, shards updated after commit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.db.models import Product, ReferenceImage, ShardVersion
from app.index.shards import ShardSet
from app.storage.blobs import BlobStore


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
        self, sku: str, name: str, metadata: dict[str, Any], images: list[NewImage]
    ) -> Product:
        with self.session_factory() as session:
            if session.scalar(select(Product.id).where(Product.sku == sku)) is not None:
                raise ProductExists(sku)
            product = Product(sku=sku, name=name, metadata_=metadata)
            session.add(product)
            try:
                session.flush()
            except IntegrityError as exc:
                raise ProductExists(sku) from exc
            self._insert_images(session, product, images, existing={})
            return self._get(session, sku)

    def add_images(self, sku: str, images: list[NewImage]) -> tuple[list[int], int]:
        """The image id of every upload (a duplicate gets the stored id), and how many are new."""
        with self.session_factory() as session:
            product = session.scalar(select(Product).where(Product.sku == sku))
            if product is None:
                raise NotFound(sku)
            existing = dict(
                session.execute(
                    select(ReferenceImage.sha256, ReferenceImage.id).where(
                        ReferenceImage.product_id == product.id
                    )
                ).all()
            )
            return self._insert_images(session, product, images, existing)

    def _insert_images(
        self, session: Session, product: Product, images: list[NewImage], existing: dict[str, int]
    ) -> tuple[list[int], int]:
        # Blobs first: a row must never point at bytes that are not on disk yet.
        fresh: dict[str, NewImage] = {}
        for image in images:
            if image.sha256 not in existing and image.sha256 not in fresh:
                self.blobs.put(image.data)
                fresh[image.sha256] = image
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
            )
            for sha, image in fresh.items()
        }
        session.add_all(rows.values())
        try:
            session.flush()
            for row in rows.values():
                row.shard = (row.id - 1) // self.shard_capacity
            session.flush()
            versions = bump_shard_versions(session, self.model_id, (r.shard for r in rows.values()))
            session.commit()
        except IntegrityError as exc:
            session.rollback()
            raise WriteConflict(product.sku) from exc
        # Committed: now (and only now) make the new vectors searchable here.
        by_shard: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
        for sha, row in rows.items():
            by_shard[row.shard].append((row.id, fresh[sha].embedding))
        for shard, items in by_shard.items():
            ids = np.array([i for i, _ in items], dtype=np.int64)
            vectors = np.stack([v for _, v in items]).astype(np.float32)
            self.shards.apply_added(shard, versions[shard], ids, vectors)
        ids_by_sha = {**existing, **{sha: row.id for sha, row in rows.items()}}
        return [ids_by_sha[image.sha256] for image in images], len(rows)

    def delete_product(self, sku: str) -> None:
        with self.session_factory() as session:
            product = session.scalar(select(Product).where(Product.sku == sku))
            if product is None:
                raise NotFound(sku)
            refs = session.execute(
                select(ReferenceImage.id, ReferenceImage.model_id, ReferenceImage.shard).where(
                    ReferenceImage.product_id == product.id
                )
            ).all()
            session.delete(product)
            self._commit_removal(session, refs)

    def delete_image(self, sku: str, image_id: int) -> None:
        with self.session_factory() as session:
            image = session.scalar(
                select(ReferenceImage)
                .join(Product)
                .where(Product.sku == sku, ReferenceImage.id == image_id)
            )
            if image is None:
                raise NotFound(f"{sku}/{image_id}")
            refs = [(image.id, image.model_id, image.shard)]
            session.delete(image)
            self._commit_removal(session, refs)

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
        for shard, version in mine.items():
            ids = np.array([i for i, m, s in refs if m == self.model_id and s == shard])
            self.shards.apply_removed(shard, version, ids)

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
        """Look search hits up in SQL: ids deleted elsewhere since the shard loaded drop out."""
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
