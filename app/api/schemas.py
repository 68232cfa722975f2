"""Response bodies of the HTTP contract (ARCHITECTURE.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from app.db.models import Product


class ProductOut(BaseModel):
    sku: str
    name: str
    metadata: dict[str, Any]
    image_count: int
    image_ids: list[int]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, product: Product) -> ProductOut:
        ids = [image.id for image in product.images]
        return cls(
            sku=product.sku,
            name=product.name,
            metadata=product.metadata_,
            image_count=len(ids),
            image_ids=ids,
            created_at=_utc(product.created_at),
            updated_at=_utc(product.updated_at),
        )


def _utc(moment: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class ProductPage(BaseModel):
    items: list[ProductOut]
    total: int
    limit: int
    offset: int


class ImagesAdded(BaseModel):
    sku: str
    image_ids: list[int]  # one per upload, in order; a duplicate gets the id already stored
    added: int  # how many were new


class MatchOut(BaseModel):
    sku: str
    name: str
    score: float
    image_id: int


class ClassifyResult(BaseModel):
    matches: list[MatchOut]
    unknown: bool
    model: str


class BatchClassifyResult(BaseModel):
    results: list[ClassifyResult]
    model: str
