"""Search scopes: which reference images a catalogue and/or a metadata filter lets a search see.

The answer is an array of image ids computed in SQL (app/catalogue/scope_queries.py: catalogue
membership, exact matches on the product metadata JSON) and handed to the index as a FAISS
selector, so the restriction happens inside the search. Arrays are cached per scope with the
stamp they were read at: the model's change-log head (every image add, delete or reindex moves
it) and, for a catalogue scope, the catalogue epoch (every membership change of an existing
product moves it). A request costs one small stamp query while the cached array is current.

When only the head moved, the cached array is brought up to it from the log instead of being
recomputed: the images the new entries name leave the array, and those of them the scope still
allows (one query over just those ids) come back. That happens as the shards apply entries
(`changed`, a `ShardStore` listener, wakes a thread that brings the most recently used scopes up
to the head), so the first filtered request after a write usually finds its scope current; one
that comes sooner does the same update itself. A product's metadata is written only with the
product, and a new or deleted product's memberships travel with its images' log entry, so the
entries name every image whose answer can have changed. Processes sharing a database see each
other's changes through the same stamp.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.catalogue.errors import UnknownCatalogue, UnknownMetadataKey
from app.catalogue.scope_queries import FilterPairs, ScopeQueries, ScopeReader
from app.strict_json import JsonRefused, loads_strict

MAX_FILTER_KEYS = 16
MAX_FILTER_VALUES = 100
CACHE_ENTRIES = 256
REFRESHED_SCOPES = 32  # the most recently used, brought up to the head after each change
REFRESH_IF_USED_WITHIN_S = 600.0  # a scope no request asked for lately is left to the next one

log = logging.getLogger(__name__)


class FilterRefused(ValueError):
    """A `filter` the contract refuses; the message names what is wrong in it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
    """`{"brand": "Oatly", "size": ["1l", "2l"]}` -> sorted pairs; raises FilterRefused."""
    try:
        value = loads_strict(raw)
    except JsonRefused as exc:
        raise FilterRefused(exc.worded("filter", "filter must be a JSON object")) from exc
    if not isinstance(value, dict):
        raise FilterRefused("filter must be a JSON object")
    if len(value) > MAX_FILTER_KEYS:
        raise FilterRefused(f"filter: at most {MAX_FILTER_KEYS} keys")
    pairs = []
    for key, wanted in sorted(value.items()):
        values = wanted if isinstance(wanted, list) else [wanted]
        if not values or len(values) > MAX_FILTER_VALUES or not all(map(_scalar, values)):
            raise FilterRefused(
                f'filter: "{key}" must be a string, number, boolean or null, or a list of '
                f"1-{MAX_FILTER_VALUES} of them"
            )
        # Kept as JSON text: Python says 1 == True (and hashes them alike), JSON does not.
        pairs.append((key, tuple(sorted({json.dumps(v) for v in values}))))
    return tuple(pairs)


@dataclass(frozen=True)
class _Cached:
    head: int
    epoch: int
    ids: np.ndarray


class ScopeResolver:
    def __init__(self, queries: ScopeQueries) -> None:
        self.queries = queries
        self._cache: OrderedDict[Scope, _Cached] = OrderedDict()
        self._lock = threading.Lock()
        self._used: dict[Scope, float] = {}  # monotonic time of the last request per scope
        self._wake = threading.Event()
        self._closed = False
        self._refresher: threading.Thread | None = None

    def changed(self, image_ids: list[int] | None) -> None:
        """A `ShardStore` change listener (called under the store's lock: it only wakes the
        refresher, which reads SQL on its own thread)."""
        if self._closed:
            return
        if self._refresher is None:
            self._refresher = threading.Thread(
                target=self._refresh, name="scope-refresh", daemon=True
            )
            self._refresher.start()
        self._wake.set()

    def _refresh(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            lately = time.monotonic() - REFRESH_IF_USED_WITHIN_S
            with self._lock:
                recent = list(self._cache)[-REFRESHED_SCOPES:]
                recent = [s for s in recent if self._used.get(s, 0.0) > lately]
            for scope in reversed(recent):
                try:
                    self._current(scope)
                except (UnknownCatalogue, UnknownMetadataKey):
                    with self._lock:
                        self._cache.pop(scope, None)  # unknown now: a request will say so
                except Exception:
                    # The database may be away: requests compute what they need themselves.
                    log.warning("refreshing a cached search scope failed", exc_info=True)
                    break

    def cached_head(self, scope: Scope) -> int | None:
        """The log head the scope's cached array is current at, if cached."""
        with self._lock:
            cached = self._cache.get(scope)
        return None if cached is None else cached.head

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._refresher is not None:
            self._refresher.join(timeout=5)

    def allowed(self, scope: Scope) -> np.ndarray | None:
        """Image ids the scope allows (sorted int64), or None when it restricts nothing."""
        if scope.unrestricted:
            return None
        ids = self._current(scope)
        with self._lock:
            self._used[scope] = time.monotonic()
        return ids

    def _current(self, scope: Scope) -> np.ndarray:
        with self.queries.reading() as reader:
            head, epoch = reader.stamp()
            cached = self._usable(scope, epoch)
            if cached is not None and cached.head >= head:
                return cached.ids  # current, or read by a request that began after this one
            ids = self._read(reader, scope, cached, head)  # raises UnknownCatalogue / ...Key
        with self._lock:
            kept = self._cache.get(scope)
            # A slower reader of an older head must not replace a newer answer.
            if kept is None or kept.head <= head:
                self._cache[scope] = _Cached(head, epoch, ids)
            self._cache.move_to_end(scope)
            while len(self._cache) > CACHE_ENTRIES:
                dropped, _ = self._cache.popitem(last=False)
                self._used.pop(dropped, None)
        return ids

    def _usable(self, scope: Scope, epoch: int) -> _Cached | None:
        """The cached array, if a log head at or past its own can bring it up to date."""
        with self._lock:
            cached = self._cache.get(scope)
            if cached is None:
                return None
            # A filter alone does not depend on memberships.
            if scope.catalogue is not None and cached.epoch != epoch:
                return None
            # An empty array is not trusted: its catalogue may have become unknown since.
            if len(cached.ids) == 0:
                return None
            self._cache.move_to_end(scope)
            return cached

    @staticmethod
    def _read(reader: ScopeReader, scope: Scope, cached: _Cached | None, head: int) -> np.ndarray:
        """The cached array brought up to `head` by the log's entries, or the whole answer when
        there is none or the entries cannot be read."""
        touched = None if cached is None else reader.touched_since(cached.head, head)
        if cached is None or touched is None:
            return reader.image_ids(scope.catalogue, scope.filter)
        kept = cached.ids[~np.isin(cached.ids, touched, assume_unique=True)]
        allowed = reader.image_ids(scope.catalogue, scope.filter, among=touched)
        return np.union1d(kept, allowed).astype(np.int64)
