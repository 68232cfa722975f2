"""Catalogue (product set) membership, and the SQL reads of the catalogue and reference routes.

A product belongs to any number of named catalogues (rows of `product_catalogues`); a catalogue
exists while at least one product belongs to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app.catalogue.memberships import add_memberships, drop_memberships
from app.catalogue.products import NotFound
from app.db.tables import Product, ProductCatalogue, ReferenceImage


def set_catalogues(session_factory: Callable[[], Session], sku: str, names: list[str]) -> Product:
    """Replace a product's catalogues; one transaction, the product row locked meanwhile."""
    with session_factory() as session:
        product = session.scalar(select(Product).where(Product.sku == sku).with_for_update())
        if product is None:
            raise NotFound(sku)
        drop_memberships(session, product.id)
        add_memberships(session, product.id, names)
        product.updated_at = datetime.now(UTC)
        session.flush()
        # Read the answer before commit: a read after it could fail (database gone) and report
        # a committed change as an error. populate_existing: reload the memberships just written.
        fresh = session.scalar(
            select(Product)
            .where(Product.id == product.id)
            .options(selectinload(Product.images), selectinload(Product.catalogue_links))
            .execution_options(populate_existing=True)
        )
        if fresh is None:
            raise NotFound(sku)
        session.commit()
        return fresh


def list_catalogues(session_factory: Callable[[], Session]) -> list[tuple[str, int]]:
    with session_factory() as session:
        rows = session.execute(
            select(ProductCatalogue.catalogue, func.count())
            .group_by(ProductCatalogue.catalogue)
            .order_by(ProductCatalogue.catalogue)
        ).all()
    return [(str(name), int(count)) for name, count in rows]


@dataclass(frozen=True)
class StoredImage:
    id: int
    sha256: str
    blob_key: str
    image_format: str


def find_image(session_factory: Callable[[], Session], sku: str, image_id: int) -> StoredImage:
    with session_factory() as session:
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
        raise NotFound(f"{sku}/{image_id}")
    return StoredImage(int(row[0]), row[1], row[2], row[3])
