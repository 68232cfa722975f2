"""SQL schema: the source of truth for products, reference images and their embeddings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
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
    barcode_links: Mapped[list[ProductBarcode]] = relationship(
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ProductBarcode.gtin",
        lazy="selectin",
    )


class ReferenceImage(Base):
    """A stored reference photo. Its vectors live in `embeddings`, one set per model."""

    __tablename__ = "reference_images"
    __table_args__ = (
        UniqueConstraint("product_id", "sha256", name="uq_reference_images_product_sha256"),
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    product: Mapped[Product] = relationship(back_populates="images")


class Embedding(Base):
    """One vector of one reference image under one model: code 0 is the image itself, codes
    1..7 its degraded views (app/encoder/views.py). Several models' rows live side by side, so
    a reindex to a new model never disturbs replicas still serving the old one.

    `vector` is float16, little-endian, L2-normalised before rounding (half the bytes of
    float32; what that costs in accuracy is measured in bench/changelog.py).
    """

    __tablename__ = "embeddings"
    __table_args__ = (Index("ix_embeddings_image_id", "image_id"),)

    model_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    image_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("reference_images.id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[int] = mapped_column(Integer, primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    # On code-0 rows: the view codes stored beside it ("1,3"; "" = none), so that
    # `retailklip reindex` knows which images a change of RETAILKLIP_REFERENCE_VIEWS left stale.
    views: Mapped[str] = mapped_column(String(32), nullable=False, default="", server_default="")


class LogHead(Base):
    """Per model: the last sequence number handed out and the last one pruned.

    Writers bump `last_seq` with an upsert in their own transaction; the row lock it takes is
    held to commit, so sequence numbers commit in order and a reader never sees n+1 without n.
    """

    __tablename__ = "log_heads"

    model_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    pruned_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class ChangeLogEntry(Base):
    """One write's vector ids for one model; replicas re-read those ids' rows to apply it."""

    __tablename__ = "change_log"
    __table_args__ = (Index("ix_change_log_created_at", "created_at"),)  # pruning by age

    model_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    op: Mapped[str] = mapped_column(String(8), nullable=False)  # "add" | "remove"
    vector_ids: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # int64 little-endian
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Replica(Base):
    """A serving process's heartbeat: which model it serves and how far it has read the log.

    `retailklip drop-model` refuses while a replica on that model reported recently."""

    __tablename__ = "replicas"

    replica_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(128), nullable=False)
    position: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    ready: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProductCatalogue(Base):
    """Membership of a product in a named catalogue (product set); a catalogue exists while at
    least one product belongs to it."""

    __tablename__ = "product_catalogues"
    __table_args__ = (Index("ix_product_catalogues_catalogue", "catalogue", "product_id"),)

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    catalogue: Mapped[str] = mapped_column(String(64), primary_key=True)


class ProductBarcode(Base):
    """A GTIN printed on a product, normalised to 14 digits (app/barcodes/gtin.py): one product
    per code, so a code read from a photo names one product."""

    __tablename__ = "product_barcodes"

    gtin: Mapped[str] = mapped_column(String(14), primary_key=True)
    product_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("products.id", ondelete="CASCADE"), nullable=False, index=True
    )


class CatalogueEpoch(Base):
    """One row, bumped with every membership change: cached allowed-id sets of every process
    compare it (with the shard versions) to know they are still current."""

    __tablename__ = "catalogue_epochs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class ReviewItem(Base):
    """A classification kept for a person (RETAILKLIP_REVIEW): the photo or box crop, stored
    under `photo_key` in the review photo directory, and the answer it got."""

    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    model_id: Mapped[str] = mapped_column(String(128), nullable=False)
    photo_key: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    verdict: Mapped[str] = mapped_column(String(16), nullable=False)
    top_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    margin: Mapped[float | None] = mapped_column(Float, nullable=True)
    # [{"sku", "name", "score"}, ...] best first, as the answer named them.
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    box: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    # The codes read from the photo that no product held: a confirmation attaches them.
    barcodes: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
