"""One model's index on this replica, and the background loop that keeps it in step with SQL.

`IndexSync` wires the pieces app/index/ and app/db/ hold, each with one job: the `ShardStore`
(contents and search), the `LogFollower` (change log -> store, local writes), `ShardPersistence`
(files), `ShardMaintenance` (training) and the `ReplicaRegistry` (heartbeat, log pruning).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db.change_feed import SqlChangeFeed
from app.db.log_notices import LogListener
from app.db.replicas import ReplicaRegistry
from app.index.config import IndexConfig
from app.index.log_follower import LogFollower
from app.index.maintenance import ShardMaintenance
from app.index.shard_files import ShardFiles
from app.index.shard_persistence import ShardPersistence
from app.index.shard_store import ShardStore

log = logging.getLogger(__name__)


@dataclass
class IndexSync:
    store: ShardStore
    follower: LogFollower
    files: ShardPersistence
    maintenance: ShardMaintenance
    replicas: ReplicaRegistry

    @classmethod
    def open(
        cls,
        model_id: str,
        dim: int,
        shard_dir: Path,
        session_factory: Callable[[], Session],
        index_config: IndexConfig | None = None,
        log_retention_s: float = 7 * 86400,
    ) -> IndexSync:
        """Nothing read yet: `sync` (or `start`) loads the shards."""
        store = ShardStore(model_id, dim, index_config)
        files = ShardPersistence(store, ShardFiles(shard_dir, model_id, dim, store.index_config))
        feed = SqlChangeFeed(session_factory, model_id, dim)
        return cls(
            store,
            LogFollower(store, feed, files),
            files,
            ShardMaintenance(store),
            ReplicaRegistry(session_factory, model_id, log_retention_s),
        )

    # Read-outs for probes, metrics and logs.
    @property
    def model_id(self) -> str:
        return self.store.model_id

    @property
    def size(self) -> int:
        return self.store.size

    @property
    def position(self) -> int:
        return self.store.position

    @property
    def rebuilds(self) -> int:
        return self.follower.rebuilds

    @property
    def complete(self) -> bool:
        return self.follower.complete

    def sync(self, use_files: bool = False) -> int:
        """Apply what the log holds past the store's position, then report to the replicas
        table; returns entries applied (+1 per rebuild)."""
        changed = self.follower.sync(use_files)
        self.replicas.report(self.store.position, self.follower.complete)
        return changed

    def start(self) -> None:
        """Blocking start-up: shards from files or SQL, written back, training started if due
        (it never delays readiness)."""
        self.sync(use_files=True)
        self.persist_dirty()
        self.maintenance.in_background()

    def persist_dirty(self) -> int:
        return self.files.persist_dirty()

    async def keep_in_step(
        self, interval_s: float, persist_interval_s: float, listen: Engine | None = None
    ) -> None:
        """Follow the change log other processes append to; now and then write changed shards.
        With `listen` (PostgreSQL), a write's notification wakes the loop at once
        (app/db/log_notices.py); the interval stays as the fallback. Every step runs in the
        thread pool: each takes locks or reads SQL."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        listener = None
        if listen is not None:

            def heard() -> None:  # on the listener's thread
                loop.call_soon_threadsafe(wake.set)

            listener = LogListener(listen, self.model_id, heard)
            listener.start()
        last_persist = loop.time()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), interval_s)
                wake.clear()  # what arrives from here on wakes the next round
                try:
                    await anyio.to_thread.run_sync(self.sync)
                    await anyio.to_thread.run_sync(self.maintenance.in_background)
                    # Files only speed up the next start (SQL is the truth): write them rarely.
                    if loop.time() - last_persist >= persist_interval_s:
                        await anyio.to_thread.run_sync(self.persist_dirty)
                        last_persist = loop.time()
                except Exception:
                    log.exception("shard sync failed; will retry")
        finally:
            if listener is not None:
                listener.stop(timeout=0)
