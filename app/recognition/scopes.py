"""Search scopes: which reference images a catalogue and/or a metadata filter lets a search see.

The answer is an array of image ids computed in SQL (app/catalogue/scope_queries.py: catalogue
membership, exact matches on the product metadata JSON) and handed to the index as a FAISS
selector, so the restriction happens inside the search. Arrays are cached per scope with the
stamp they were read at: the model's change-log head (every image add, delete or reindex moves
it) and the catalogue epoch (every membership change moves it). A request costs one small stamp
query while the cached array is current; processes sharing a database see each other's changes
through the same stamp.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.catalogue.scope_queries import (
    FilterPairs,
    ScopeQueries,
    UnknownCatalogue,
    UnknownMetadataKey,
)
from app.strict_json import loads_strict

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
    filter: FilterPairs = ()

    @property
    def unrestricted(self) -> bool:
        return self.catalogue is None and not self.filter


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def parse_filter(raw: str) -> FilterPairs:
    """`{"brand": "Oatly", "size": ["1l", "2l"]}` -> sorted pairs; raises ScopeError."""
    try:
        value = loads_strict(raw)
    except ValueError as exc:
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


class ScopeResolver:
    def __init__(self, queries: ScopeQueries) -> None:
        self.queries = queries
        self._cache: OrderedDict[Scope, tuple[tuple[int, int], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def allowed(self, scope: Scope) -> np.ndarray | None:
        """Image ids the scope allows (sorted int64), or None when it restricts nothing."""
        if scope.unrestricted:
            return None
        with self.queries.reading() as reader:
            stamp = reader.stamp()
            with self._lock:
                hit = self._cache.get(scope)
                if hit is not None and hit[0] == stamp:
                    self._cache.move_to_end(scope)
                    return hit[1]
            try:
                ids = reader.image_ids(scope.catalogue, scope.filter)
            except UnknownCatalogue as exc:
                raise ScopeError(f"catalogue not found: {exc}", 404) from exc
            except UnknownMetadataKey as exc:
                raise ScopeError(f'filter: no product has metadata key "{exc}"', 404) from exc
        with self._lock:
            self._cache[scope] = (stamp, ids)
            self._cache.move_to_end(scope)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return ids
