"""Catalogue (product set) membership, and the SQL reads of catalogues and stored images.

A product belongs to any number of named catalogues (rows of `product_catalogues`); a catalogue
exists while at least one product belongs to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app.catalogue.errors import ImageNotFound, ProductNotFound
from app.catalogue.memberships import add_memberships, drop_memberships
from app.catalogue.products import ProductRecord, as_is
from app.db.tables import Product, ProductCatalogue, ReferenceImage

T = TypeVar("T")


@dataclass(frozen=True)
class StoredImage:
    id: int
    sha256: str
    blob_key: str
    image_format: str


class ProductSets:
    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self.session_factory = session_factory

    def set_catalogues(
        self,
        sku: str,
        names: list[str],
        answer: Callable[[ProductRecord], T] = as_is,  # type: ignore[assignment]
    ) -> T:
        """Replace a product's catalogues; one transaction, the product row locked meanwhile.
        `answer` runs before the commit, as for `ProductStore.create_product`."""
        with self.session_factory() as session:
            product = session.scalar(select(Product).where(Product.sku == sku).with_for_update())
            if product is None:
                raise ProductNotFound(sku)
            drop_memberships(session, product.id)
            add_memberships(session, product.id, names)
            product.updated_at = datetime.now(UTC)
            session.flush()
            # populate_existing: reload the memberships just written.
            fresh = session.scalar(
                select(Product)
                .where(Product.id == product.id)
                .options(selectinload(Product.images), selectinload(Product.catalogue_links))
                .execution_options(populate_existing=True)
            )
            if fresh is None:
                raise ProductNotFound(sku)
            answered = answer(ProductRecord.of(fresh))
            session.commit()
            return answered

    def catalogues(self) -> list[tuple[str, int]]:
        """Every catalogue with its product count, by name."""
        with self.session_factory() as session:
            rows = session.execute(
                select(ProductCatalogue.catalogue, func.count())
                .group_by(ProductCatalogue.catalogue)
                .order_by(ProductCatalogue.catalogue)
            ).all()
        return [(str(name), int(count)) for name, count in rows]

    def image(self, sku: str, image_id: int) -> StoredImage:
        """A reference image of a product; raises ImageNotFound."""
        with self.session_factory() as session:
            row = session.execute(
                select(
                    ReferenceImage.id,
                    ReferenceImage.sha256,
                    ReferenceImage.blob_key,
                    ReferenceImage.image_format,
                )
                .join(Product)
                .where(ReferenceImage.id == image_id, Product.sku == sku)
            ).first()
        if row is None:
            raise ImageNotFound(sku, image_id)
        return StoredImage(int(row[0]), row[1], row[2], row[3])
