"""The SQL of search scopes: which reference images a catalogue and/or a metadata filter allow,
the stamp that says when a cached answer is still current, and the images the change log says
were touched since (app/recognition/scopes.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.catalogue.errors import UnknownCatalogue, UnknownMetadataKey
from app.db.changelog import entries_after
from app.db.dialect import metadata_match
from app.db.tables import (
    CatalogueEpoch,
    Embedding,
    LogHead,
    Product,
    ProductCatalogue,
    ReferenceImage,
)
from app.index.vector_ids import image_of

# A filter as sorted (key, allowed values as JSON text) pairs.
FilterPairs = tuple[tuple[str, tuple[str, ...]], ...]

# Past these, a cached scope is recomputed whole rather than updated by the log's entries.
MAX_DELTA_ENTRIES = 500
MAX_DELTA_IMAGES = 5_000


class ScopeQueries:
    def __init__(self, session_factory: Callable[[], Session], model_id: str) -> None:
        self.session_factory = session_factory
        self.model_id = model_id

    @contextmanager
    def reading(self) -> Iterator[ScopeReader]:
        """One session for a stamp and, when the cache is stale, the ids at that stamp."""
        with self.session_factory() as session:
            yield ScopeReader(session, self.model_id)


class ScopeReader:
    def __init__(self, session: Session, model_id: str) -> None:
        self.session = session
        self.model_id = model_id

    def stamp(self) -> tuple[int, int]:
        """(the model's log head, the catalogue epoch): every add, delete or reindex for the
        model moves the first, every membership change the second."""
        head = sa.select(LogHead.last_seq).where(LogHead.model_id == self.model_id)
        epoch = sa.select(CatalogueEpoch.epoch).where(CatalogueEpoch.id == 1)
        row = self.session.execute(sa.select(head.scalar_subquery(), epoch.scalar_subquery())).one()
        return int(row[0] or 0), int(row[1] or 0)

    def touched_since(self, position: int, head: int) -> np.ndarray | None:
        """Sorted ids of the images named by the model's log entries after `position` up to
        `head`; None when they cannot all be read (pruned) or are too many to be worth it."""
        if head - position > MAX_DELTA_ENTRIES:
            return None
        entries = entries_after(self.session, self.model_id, position, head - position)
        if [e.seq for e in entries] != list(range(position + 1, head + 1)):
            return None
        if not entries:
            return np.empty(0, np.int64)
        images = np.unique(image_of(np.concatenate([e.vector_ids for e in entries])))
        return images if len(images) <= MAX_DELTA_IMAGES else None

    def image_ids(
        self, catalogue: str | None, filter: FilterPairs, among: np.ndarray | None = None
    ) -> np.ndarray:
        """Sorted ids of the images with a vector of the model whose product is in `catalogue`
        and matches every filter key, only those in `among` if given; raises UnknownCatalogue /
        UnknownMetadataKey."""
        session = self.session
        # Images holding a vector of this model (code 0: the image itself, not a view).
        query = (
            sa.select(ReferenceImage.id)
            .join(Embedding, Embedding.image_id == ReferenceImage.id)
            .where(Embedding.model_id == self.model_id, Embedding.code == 0)
        )
        products = sa.select(Product.id)
        if catalogue is not None:
            members = sa.select(ProductCatalogue.product_id).where(
                ProductCatalogue.catalogue == catalogue
            )
            if session.scalar(members.limit(1)) is None:
                raise UnknownCatalogue(catalogue)
            products = products.where(Product.id.in_(members))
        for key, values in filter:
            wanted = tuple(json.loads(v) for v in values)
            has_key, matches = metadata_match(session, Product.metadata_, key, wanted)
            if session.scalar(sa.select(Product.id).where(has_key).limit(1)) is None:
                raise UnknownMetadataKey(key)
            products = products.where(matches)
        if among is not None:
            if len(among) == 0:
                return np.empty(0, np.int64)
            query = query.where(ReferenceImage.id.in_(among.tolist()))
        query = query.where(ReferenceImage.product_id.in_(products)).order_by(ReferenceImage.id)
        return np.fromiter(session.scalars(query), dtype=np.int64)
