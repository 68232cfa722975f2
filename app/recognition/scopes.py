"""Search scopes: which reference images a catalogue and/or a metadata filter lets a search see.

The answer is an array of image ids computed in SQL (catalogue membership, exact matches on the
product metadata JSON) and handed to the index as a FAISS selector, so the restriction happens
inside the search. Arrays are cached per scope and stamped with the SQL state they were read at
(the sum of this model's shard versions, which every image add/delete moves, and the catalogue
epoch, which every membership change moves); a request costs one small stamp query when the
cached array is still current. Several processes sharing a database see each other's changes
through the same stamp.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.db.models import (
    CatalogueEpoch,
    Embedding,
    LogHead,
    Product,
    ProductCatalogue,
    ReferenceImage,
)

Scalar = str | int | float | bool | None
MAX_FILTER_KEYS = 16
MAX_FILTER_VALUES = 100
CACHE_ENTRIES = 256


class ScopeError(ValueError):
    """A scope the request cannot have; `status` is the HTTP code it maps to."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Scope:
    """Hashable: a catalogue name and the filter as sorted (key, allowed values) pairs, each
    value as its JSON text."""

    catalogue: str | None = None
    filter: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def unrestricted(self) -> bool:
        return self.catalogue is None and not self.filter


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def parse_filter(raw: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`{"brand": "Oatly", "size": ["1l", "2l"]}` -> sorted pairs; raises ScopeError."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(raw, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise ScopeError("filter must be a JSON object") from exc
    if not isinstance(value, dict):
        raise ScopeError("filter must be a JSON object")
    if len(value) > MAX_FILTER_KEYS:
        raise ScopeError(f"filter: at most {MAX_FILTER_KEYS} keys")
    pairs = []
    for key, wanted in sorted(value.items()):
        values = wanted if isinstance(wanted, list) else [wanted]
        if not values or len(values) > MAX_FILTER_VALUES or not all(map(_scalar, values)):
            raise ScopeError(
                f'filter: "{key}" must be a string, number, boolean or null, or a list of '
                f"1-{MAX_FILTER_VALUES} of them"
            )
        # Kept as JSON text: Python says 1 == True (and hashes them alike), JSON does not.
        pairs.append((key, tuple(sorted({json.dumps(v) for v in values}))))
    return tuple(pairs)


def _json_kind(value: Scalar) -> tuple[str, ...]:
    """SQLite json_each() type names a stored value must have to equal `value`."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("true",) if value else ("false",)
    if isinstance(value, str):
        return ("text",)
    return ("integer", "real")


class ScopeResolver:
    def __init__(self, session_factory: Callable[[], Session], model_id: str) -> None:
        self.session_factory = session_factory
        self.model_id = model_id
        self._cache: OrderedDict[Scope, tuple[tuple[int, int], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def allowed(self, scope: Scope) -> np.ndarray | None:
        """Image ids the scope allows (sorted int64), or None when it restricts nothing."""
        if scope.unrestricted:
            return None
        with self.session_factory() as session:
            stamp = self._stamp(session)
            with self._lock:
                hit = self._cache.get(scope)
                if hit is not None and hit[0] == stamp:
                    self._cache.move_to_end(scope)
                    return hit[1]
            ids = self._compute(session, scope)
        with self._lock:
            self._cache[scope] = (stamp, ids)
            self._cache.move_to_end(scope)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return ids

    def _stamp(self, session: Session) -> tuple[int, int]:
        # Every add, delete or reindex for the model moves its log head.
        versions = sa.select(LogHead.last_seq).where(LogHead.model_id == self.model_id)
        epoch = sa.select(CatalogueEpoch.epoch).where(CatalogueEpoch.id == 1)
        row = session.execute(sa.select(versions.scalar_subquery(), epoch.scalar_subquery())).one()
        return int(row[0] or 0), int(row[1] or 0)

    def _compute(self, session: Session, scope: Scope) -> np.ndarray:
        # Images holding a vector of this model (code 0: the image itself, not a view).
        query = (
            sa.select(ReferenceImage.id)
            .join(Embedding, Embedding.image_id == ReferenceImage.id)
            .where(Embedding.model_id == self.model_id, Embedding.code == 0)
        )
        products = sa.select(Product.id)
        if scope.catalogue is not None:
            known = session.scalar(
                sa.select(ProductCatalogue.product_id)
                .where(ProductCatalogue.catalogue == scope.catalogue)
                .limit(1)
            )
            if known is None:
                raise ScopeError(f"catalogue not found: {scope.catalogue}", 404)
            members = sa.select(ProductCatalogue.product_id).where(
                ProductCatalogue.catalogue == scope.catalogue
            )
            products = products.where(Product.id.in_(members))
        postgres = session.get_bind().dialect.name == "postgresql"
        for key, values in scope.filter:
            wanted = tuple(json.loads(v) for v in values)
            has_key, matches = (_pg if postgres else _sqlite)(key, wanted)
            if session.scalar(sa.select(Product.id).where(has_key).limit(1)) is None:
                raise ScopeError(f'filter: no product has metadata key "{key}"', 404)
            products = products.where(matches)
        query = query.where(ReferenceImage.product_id.in_(products)).order_by(ReferenceImage.id)
        return np.fromiter(session.scalars(query), dtype=np.int64)


def _pg(key: str, values: tuple[Scalar, ...]) -> tuple[Any, Any]:
    """jsonb equality: numbers by value (1 = 1.0), strings, booleans and null by kind and value."""
    doc = sa.cast(Product.metadata_, JSONB)
    stored = doc.op("->")(sa.bindparam(None, key, type_=sa.Text))
    wanted = [sa.cast(sa.bindparam(None, json.dumps(v), type_=sa.Text), JSONB) for v in values]
    return doc.has_key(sa.bindparam(None, key, type_=sa.Text)), sa.or_(
        *(stored == w for w in wanted)
    )


def _sqlite(key: str, values: tuple[Scalar, ...]) -> tuple[Any, Any]:
    """json_each() over the top-level object: no JSON-path quoting of arbitrary keys."""

    def entries() -> Any:
        return sa.func.json_each(Product.metadata_).table_valued("key", "type", "atom")

    each = entries()
    has_key = sa.exists().select_from(each).where(each.c.key == key)
    found = entries()
    alternatives = []
    for value in values:
        same = found.c.type.in_(_json_kind(value))
        if value is not None and not isinstance(value, bool):
            same = sa.and_(same, found.c.atom == value)
        alternatives.append(same)
    matches = sa.exists().select_from(found).where(found.c.key == key, sa.or_(*alternatives))
    return has_key, matches
