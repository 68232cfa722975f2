"""The review queue in SQL: classifications kept for a person, bounded by count and age.

Photos live in a blob store of their own (never the references' store, so dropping an item
can never take a reference's bytes), keyed by content: the same photo is queued once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.catalogue.errors import ReviewItemNotFound
from app.db.tables import ReviewItem
from app.storage.blobs import BlobStore


@dataclass(frozen=True)
class QueuedPhoto:
    """What a classification leaves for review."""

    data: bytes  # the photo, or the box's crop, as an image file
    model_id: str
    verdict: str
    top_score: float | None
    margin: float | None
    candidates: list[dict[str, Any]]
    box: list[float] | None = None
    # The codes read in it: {"text", "format", "gtin", "sku"} (sku null: no product held it).
    barcodes: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class ReviewRecord:
    """A kept classification, as the queue lists it."""

    id: int
    created_at: datetime  # UTC
    model_id: str
    verdict: str
    top_score: float | None
    margin: float | None
    candidates: list[dict[str, Any]]  # best first: {"sku", "name", "score"}
    box: list[float] | None
    barcodes: list[dict[str, Any]]  # as QueuedPhoto's

    @property
    def unheld_gtins(self) -> list[str]:
        """The retail codes read in it that no product held when it was kept."""
        return [c["gtin"] for c in self.barcodes if c.get("gtin") and c.get("sku") is None]

    @classmethod
    def of(cls, item: ReviewItem) -> ReviewRecord:
        created = item.created_at
        return cls(
            id=item.id,
            created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
            model_id=item.model_id,
            verdict=item.verdict,
            top_score=item.top_score,
            margin=item.margin,
            candidates=list(item.candidates),
            box=None if item.box is None else list(item.box),
            barcodes=list(item.barcodes or []),
        )


class ReviewQueue:
    def __init__(
        self,
        session_factory: Callable[[], Session],
        photos: BlobStore,
        max_items: int,
        max_age_s: float,
    ) -> None:
        self.session_factory = session_factory
        self.photos = photos
        self.max_items = max_items
        self.max_age_s = max_age_s

    def add(self, photo: QueuedPhoto) -> int | None:
        """Keep it (None: already queued), dropping in the same transaction what the bounds
        no longer hold, oldest first: no reader ever sees the queue past them."""
        key = self.photos.put(photo.data)  # bytes before the row that names them
        with self.session_factory() as session:
            item = ReviewItem(
                model_id=photo.model_id,
                photo_key=key,
                verdict=photo.verdict,
                top_score=photo.top_score,
                margin=photo.margin,
                candidates=photo.candidates,
                box=photo.box,
                barcodes=photo.barcodes,
            )
            session.add(item)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                return None
            item_id = item.id
            dropped = self._drop(session, self._beyond_bounds(session))
            session.commit()
        self.forget_photos(dropped)
        return item_id

    def _beyond_bounds(self, session: Session) -> list[int]:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.max_age_s)
        old = select(ReviewItem.id).where(ReviewItem.created_at < cutoff)
        keep = (
            select(ReviewItem.id)
            .order_by(ReviewItem.created_at.desc(), ReviewItem.id.desc())
            .limit(self.max_items)
        )
        beyond = select(ReviewItem.id).where(ReviewItem.id.not_in(keep))
        return sorted(set(session.scalars(old)) | set(session.scalars(beyond)))

    def page(self, limit: int, offset: int) -> tuple[list[ReviewRecord], int]:
        """Most uncertain first: the smallest margin over the runner-up (no match at all
        first of all), newest first among equals."""
        with self.session_factory() as session:
            total = session.scalar(select(func.count()).select_from(ReviewItem)) or 0
            items = session.scalars(
                select(ReviewItem)
                .order_by(
                    ReviewItem.margin.is_not(None),
                    ReviewItem.margin,
                    ReviewItem.created_at.desc(),
                    ReviewItem.id.desc(),
                )
                .limit(limit)
                .offset(offset)
            ).all()
            return [ReviewRecord.of(i) for i in items], total

    def uncertain_counts(self) -> dict[str, int]:
        """SKU -> kept answers that named it first without being confident."""
        with self.session_factory() as session:
            rows = session.execute(
                select(ReviewItem.candidates).where(ReviewItem.verdict != "confident")
            ).all()
        counts: dict[str, int] = {}
        for (candidates,) in rows:
            if candidates:
                sku = candidates[0]["sku"]
                counts[sku] = counts.get(sku, 0) + 1
        return counts

    def photo(self, item_id: int) -> bytes | None:
        """An item's photo; None when there is no such item (or it was dropped meanwhile)."""
        kept = self.kept(item_id)
        return None if kept is None else kept[0]

    def kept(self, item_id: int) -> tuple[bytes, ReviewRecord] | None:
        """An item's photo and record; None when there is no such item (or it was dropped
        meanwhile)."""
        with self.session_factory() as session:
            item = session.get(ReviewItem, item_id)
            if item is None:
                return None
            record = ReviewRecord.of(item)
            key = item.photo_key
        try:
            return self.photos.get(key), record
        except FileNotFoundError:
            return None

    def remove(self, item_id: int) -> None:
        """Drop one item, row and photo; raises ReviewItemNotFound."""
        if not self._delete([item_id]):
            raise ReviewItemNotFound(item_id)

    def claim(self, session: Session, item_id: int) -> str:
        """Take the item out of the queue in the caller's transaction (a confirmation's write):
        of two claims, one gets its photo key, the other ReviewItemNotFound. The photo stays
        until `forget_photos` after the commit."""
        keys = self._drop(session, [item_id])
        if not keys:
            raise ReviewItemNotFound(item_id)
        return keys[0]

    def purge(self) -> int:
        with self.session_factory() as session:
            ids = list(session.scalars(select(ReviewItem.id)))
        return len(self._delete(ids))

    def _delete(self, ids: list[int]) -> list[str]:
        with self.session_factory() as session:
            keys = self._drop(session, ids)
            session.commit()
        self.forget_photos(keys)
        return keys

    @staticmethod
    def _drop(session: Session, ids: list[int]) -> list[str]:
        """Delete these rows in the caller's transaction; returns their photo keys."""
        if not ids:
            return []
        return list(
            session.scalars(
                delete(ReviewItem)
                .where(ReviewItem.id.in_(ids))
                .returning(ReviewItem.photo_key)
                .execution_options(synchronize_session=False)
            )
        )

    def forget_photos(self, keys: list[str]) -> None:
        for key in keys:  # after the commit: a row never names missing bytes
            self.photos.delete(key)
