"""Cached search scopes kept current from the change log, on SQLite and PostgreSQL: after each
kind of write the cached answer equals one computed from scratch, and only a membership change
of an existing product (or a log that cannot be read) costs a whole recomputation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete

from app.catalogue import scope_queries
from app.catalogue.errors import UnknownCatalogue
from app.catalogue.product_sets import ProductSets
from app.catalogue.scope_queries import ScopeQueries, ScopeReader
from app.db.tables import ChangeLogEntry
from app.recognition import scopes
from app.recognition.scopes import Scope, ScopeResolver, parse_filter
from tests.storage.test_storage import make_catalogue, new_images
from tests.support.replicas import Replica

STORE = Scope(catalogue="store")
MILK = Scope(filter=parse_filter('{"kind": "milk"}'))
MILK_IN_STORE = Scope(catalogue="store", filter=parse_filter('{"kind": "milk"}'))
SCOPES = (STORE, MILK, MILK_IN_STORE)


class Whole:
    """Counts the scope computations that read every image rather than a log's worth (and,
    in `partial`, those that read a log's worth)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.partial = 0
        original = ScopeReader.image_ids

        def counted(
            reader: ScopeReader, catalogue: str | None, filter: object, among: object = None
        ) -> np.ndarray:
            if among is None:
                self.count += 1
            else:
                self.partial += 1
            return original(reader, catalogue, filter, among)  # type: ignore[arg-type]

        monkeypatch.setattr(ScopeReader, "image_ids", counted)

    def since(self, action: object) -> int:
        before = self.count
        if callable(action):
            action()
        return self.count - before


def from_scratch(replica: Replica, scope: Scope) -> list[int]:
    ids = ScopeResolver(ScopeQueries(replica.session_factory, replica.model_id)).allowed(scope)
    assert ids is not None
    return ids.tolist()


def cached_equals_scratch(resolver: ScopeResolver, replica: Replica) -> None:
    for scope in SCOPES:
        ids = resolver.allowed(scope)
        assert ids is not None and ids.dtype == np.int64
        assert ids.tolist() == from_scratch(replica, scope), scope


@pytest.fixture
def replica(db_url: str, tmp_path: Path) -> Replica:
    replica = make_catalogue(db_url, tmp_path)
    replica.create_product("oat", "Oat", {"kind": "milk"}, new_images(2, "oat"), ["store"])
    replica.create_product("jus", "Juice", {"kind": "juice"}, new_images(2, "jus"), ["store"])
    replica.create_product("cow", "Cow", {"kind": "milk"}, new_images(1, "cow"), ["other"])
    return replica


def test_writes_update_cached_scopes_from_the_log(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = ScopeResolver(ScopeQueries(replica.session_factory, replica.model_id))
    whole = Whole(monkeypatch)
    cached_equals_scratch(resolver, replica)
    assert whole.count == 2 * len(SCOPES)  # one cold fill, one from scratch, per scope
    writes = [
        # A new product in a catalogue, with metadata: both travel with its images' log entry.
        lambda: replica.create_product(
            "soy", "Soy", {"kind": "milk"}, new_images(2, "soy"), ["store"]
        ),
        lambda: replica.add_images("jus", new_images(1, "jus-more")),
        lambda: replica.delete_image("oat", replica.get_product("oat").images[0].id),
        lambda: replica.delete_product("soy"),
        lambda: replica.create_product("rice", "Rice", {"kind": "milk"}, new_images(1, "rice")),
    ]
    for write in writes:
        write()
        recomputed = whole.since(lambda: [resolver.allowed(s) for s in SCOPES])
        assert recomputed == 0, "a write the log carries recomputed a cached scope"
        cached_equals_scratch(resolver, replica)
    assert [len(resolver.allowed(s)) for s in SCOPES] == [4, 3, 1]  # type: ignore[arg-type]


def test_a_membership_change_recomputes_catalogue_scopes_only(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = ScopeResolver(ScopeQueries(replica.session_factory, replica.model_id))
    cached_equals_scratch(resolver, replica)
    whole = Whole(monkeypatch)
    ProductSets(replica.session_factory).set_catalogues("cow", ["store", "other"])
    assert whole.since(lambda: resolver.allowed(MILK)) == 0  # a filter alone: still current
    assert whole.since(lambda: resolver.allowed(STORE)) == 1
    assert whole.since(lambda: resolver.allowed(MILK_IN_STORE)) == 1
    cached_equals_scratch(resolver, replica)
    cow = replica.get_product("cow").images[0].id
    assert cow in resolver.allowed(MILK_IN_STORE)  # type: ignore[operator]


def test_writes_through_another_replica_and_a_pruned_log(
    replica: Replica, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = ScopeResolver(ScopeQueries(replica.session_factory, replica.model_id))
    cached_equals_scratch(resolver, replica)
    other = make_catalogue(db_url, tmp_path / "other")
    other.create_product("kefir", "Kefir", {"kind": "milk"}, new_images(1, "kefir"), ["store"])
    whole = Whole(monkeypatch)
    assert whole.since(lambda: cached_equals_scratch(resolver, replica)) == len(SCOPES)
    # Entries the cache needs were pruned: the whole scope is read again, and is right.
    other.add_images("kefir", new_images(1, "kefir-2"))
    with replica.session_factory() as session:
        session.execute(delete(ChangeLogEntry))
        session.commit()
    assert whole.since(lambda: [resolver.allowed(s) for s in SCOPES]) == len(SCOPES)
    cached_equals_scratch(resolver, replica)
    # Too many entries since the cached answer: read again too.
    monkeypatch.setattr(scope_queries, "MAX_DELTA_ENTRIES", 1)
    other.add_images("kefir", new_images(1, "kefir-3"))
    other.add_images("kefir", new_images(1, "kefir-4"))
    assert whole.since(lambda: [resolver.allowed(s) for s in SCOPES]) == len(SCOPES)
    cached_equals_scratch(resolver, replica)


def test_a_catalogue_emptied_by_deletes_is_unknown_at_once(replica: Replica) -> None:
    resolver = ScopeResolver(ScopeQueries(replica.session_factory, replica.model_id))
    other = Scope(catalogue="other")
    assert len(resolver.allowed(other)) == 1  # type: ignore[arg-type]
    replica.delete_product("cow")
    with pytest.raises(UnknownCatalogue) as refused:
        resolver.allowed(other)
    assert refused.value.name == "other"


def test_applied_changes_bring_recent_scopes_up_to_date_before_a_request(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = ScopeResolver(ScopeQueries(replica.session_factory, replica.model_id))
    replica.shards.store.on_change(resolver.changed)  # as app/main.py wires it
    try:
        cached_equals_scratch(resolver, replica)
        whole = Whole(monkeypatch)
        replica.create_product("soy", "Soy", {"kind": "milk"}, new_images(1, "soy"), ["store"])
        head = replica.shards.store.position
        deadline = time.monotonic() + 10
        while any((resolver.cached_head(s) or 0) < head for s in SCOPES):
            assert time.monotonic() < deadline, "the refresher did not catch up"
            time.sleep(0.01)
        assert whole.count == 0 and whole.partial == len(SCOPES)  # a log's worth, each
        # The request itself: one stamp query, nothing recomputed.
        assert whole.since(lambda: [resolver.allowed(s) for s in SCOPES]) == 0
        assert whole.partial == len(SCOPES)
        cached_equals_scratch(resolver, replica)
    finally:
        resolver.close()


def test_scopes_no_request_asked_for_lately_are_not_refreshed(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scopes, "REFRESH_IF_USED_WITHIN_S", 0.0)
    resolver = ScopeResolver(ScopeQueries(replica.session_factory, replica.model_id))
    replica.shards.store.on_change(resolver.changed)
    try:
        resolver.allowed(STORE)
        before = resolver.cached_head(STORE)
        replica.create_product("soy", "Soy", {"kind": "milk"}, new_images(1, "soy"), ["store"])
        time.sleep(0.5)  # the refresher woke, and left the scope alone
        assert resolver.cached_head(STORE) == before
        assert replica.get_product("soy").images[0].id in resolver.allowed(STORE)  # type: ignore[operator]
    finally:
        resolver.close()
