"""SQL schema: the source of truth for products, reference images and their embeddings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY autoincrements).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSON, nullable=False, default=dict
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    images: Mapped[list[ReferenceImage]] = relationship(
        back_populates="product",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ReferenceImage.id",
    )
    # Loaded with every product (one extra IN query), so answers can list them after the
    # session closed.
    catalogue_links: Mapped[list[ProductCatalogue]] = relationship(
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ProductCatalogue.catalogue",
        lazy="selectin",
    )


class ReferenceImage(Base):
    __tablename__ = "reference_images"
    __table_args__ = (
        UniqueConstraint("product_id", "sha256", name="uq_reference_images_product_sha256"),
        Index("ix_reference_images_model_shard", "model_id", "shard"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), nullable=False, index=True
    )
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    blob_key: Mapped[str] = mapped_column(String(255), nullable=False)
    image_format: Mapped[str] = mapped_column(String(16), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    embedding: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # float32, L2-normalised
    model_id: Mapped[str] = mapped_column(String(128), nullable=False)
    shard: Mapped[int] = mapped_column(Integer, nullable=False)
    # Codes of the degraded views stored with this embedding ("1,3"; "" = none), so that
    # `retailklip reindex` knows which rows a change of RETAILKLIP_REFERENCE_VIEWS left stale.
    views: Mapped[str] = mapped_column(String(32), nullable=False, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    product: Mapped[Product] = relationship(back_populates="images")


class ReferenceView(Base):
    """A derived vector of a reference image: one of its degraded views (app/encoder/views.py).

    It belongs to its image (same model, same shard, deleted with it), is searched as that
    image, and is never listed or counted as an image of its own.
    """

    __tablename__ = "reference_views"
    __table_args__ = (Index("ix_reference_views_model_shard", "model_id", "shard"),)

    image_id: Mapped[int] = mapped_column(
        ForeignKey("reference_images.id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[int] = mapped_column(Integer, primary_key=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # float32, L2-normalised
    model_id: Mapped[str] = mapped_column(String(128), nullable=False)
    shard: Mapped[int] = mapped_column(Integer, nullable=False)


class ShardVersion(Base):
    """Bumped in the same transaction as any change to a shard's membership.

    Every process compares these with the versions of the FAISS shards it holds and rebuilds a
    shard whose version moved, which is how replicas sharing one database stay in step.
    """

    __tablename__ = "shard_versions"

    model_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class ProductCatalogue(Base):
    """Membership of a product in a named catalogue (product set); a catalogue exists while at
    least one product belongs to it."""

    __tablename__ = "product_catalogues"
    __table_args__ = (Index("ix_product_catalogues_catalogue", "catalogue", "product_id"),)

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    catalogue: Mapped[str] = mapped_column(String(64), primary_key=True)


class CatalogueEpoch(Base):
    """One row, bumped with every membership change: cached allowed-id sets of every process
    compare it (with the shard versions) to know they are still current."""

    __tablename__ = "catalogue_epochs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
