"""The pieces `IndexSync` wires: the store tells its listeners what changed, the hit names
forget what the store changed, and the replica registry reports readiness at once and
heartbeats no more often than it must (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from app.db.migrate import upgrade_to_head
from app.db.replicas import ReplicaRegistry
from app.db.session import make_engine, make_session_factory
from app.db.tables import Replica as ReplicaRow
from app.index.shard_store import ShardStore
from app.index.stored_vectors import as_stored
from app.index.vector_ids import vector_id
from app.recognition.hit_names import Match
from tests.storage.test_storage import DIM, make_catalogue, new_images, unit


def test_the_store_names_the_images_each_change_touched() -> None:
    store = ShardStore("m", DIM)
    heard: list[list[int] | None] = []
    store.on_change(heard.append)
    ids = vector_id(np.array([3, 3, 5]), np.array([0, 1, 0]))
    store.add_local(np.zeros(3, np.int64), 1, ids, as_stored(unit(3)))
    store.remove_local(2, ids[:1])
    store.add_local(np.zeros(1, np.int64), 1, ids[:1], as_stored(unit(1)))  # already applied
    store.replace_all({}, 2)
    assert heard == [[3, 5], [3], None]
    assert store.position == 2 and store.size == 0


def test_hit_names_forget_an_image_the_shards_changed(db_url: str, tmp_path: Path) -> None:
    replica = make_catalogue(db_url, tmp_path)
    first, second = (
        replica.create_product(sku, sku.upper(), {}, new_images(1, sku)) for sku in ("a", "b")
    )
    a_id, b_id = first.images[0].id, second.images[0].id
    owners = replica.names.owners
    owners.remember({a_id: Match("a", "A"), b_id: Match("b", "B")}, owners.epoch)
    replica.delete_image("a", a_id)  # applied to this replica's shards after commit
    assert owners.known([a_id, b_id]) == {b_id: Match("b", "B")}


def test_readiness_is_reported_at_once_heartbeats_only_when_due(db_url: str) -> None:
    upgrade_to_head(db_url)
    factory = make_session_factory(make_engine(db_url))
    registry = ReplicaRegistry(factory, "m")

    def row() -> tuple[int, bool]:
        with factory() as session:
            found = session.execute(
                select(ReplicaRow.position, ReplicaRow.ready).where(
                    ReplicaRow.replica_id == registry.replica_id
                )
            ).one()
            return int(found[0]), bool(found[1])

    registry.report(3, False)
    assert row() == (3, False)
    registry.report(4, False)  # within the heartbeat interval, nothing new to say
    assert row() == (3, False)
    registry.report(5, True)  # ready: said at once
    assert row() == (5, True)
