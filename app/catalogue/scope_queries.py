"""The SQL of search scopes: which reference images a catalogue and/or a metadata filter allow,
and the stamp that says when a cached answer is still current (app/recognition/scopes.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.dialect import metadata_match
from app.db.tables import (
    CatalogueEpoch,
    Embedding,
    LogHead,
    Product,
    ProductCatalogue,
    ReferenceImage,
)

# A filter as sorted (key, allowed values as JSON text) pairs.
FilterPairs = tuple[tuple[str, tuple[str, ...]], ...]


class UnknownCatalogue(LookupError):
    pass


class UnknownMetadataKey(LookupError):
    pass


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

    def image_ids(self, catalogue: str | None, filter: FilterPairs) -> np.ndarray:
        """Sorted ids of the images with a vector of the model whose product is in `catalogue`
        and matches every filter key; raises UnknownCatalogue / UnknownMetadataKey."""
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
        query = query.where(ReferenceImage.product_id.in_(products)).order_by(ReferenceImage.id)
        return np.fromiter(session.scalars(query), dtype=np.int64)
