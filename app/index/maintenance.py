"""Background training, retraining and compaction of a store's shard indexes.

k-means over a large shard takes seconds to minutes, so it never runs in a request: the index
keeps serving as it was while a thread of its own trains, and swaps under the store's lock.
"""

from __future__ import annotations

import logging
import threading

from app.index.shard_store import ShardStore

log = logging.getLogger(__name__)


class ShardMaintenance:
    def __init__(self, store: ShardStore) -> None:
        self.store = store
        self.lock = threading.Lock()  # one maintenance thread at a time
        self._thread: threading.Thread | None = None

    def maintain(self) -> int:
        """Train, retrain or compact every shard index that is due; returns how many changed.
        Blocking: `in_background` runs it on a thread of its own."""
        changed = 0
        for shard in self.store.shards_now():
            if shard.index.needs_maintenance() and shard.index.maintain():
                with self.store.lock:
                    shard.dirty = True
                changed += 1
        return changed

    def in_background(self) -> bool:
        """Start `maintain` on a daemon thread unless one is running or nothing is due."""
        with self.lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            if not any(s.index.needs_maintenance() for s in self.store.shards_now()):
                return False
            self._thread = threading.Thread(
                target=self._maintain_logged, name="shard-maintenance", daemon=True
            )
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """For tests, benchmarks and shutdown: True once no maintenance thread runs."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _maintain_logged(self) -> None:
        try:
            changed = self.maintain()
            if changed:
                log.info("index maintenance: %d shard(s) trained or compacted", changed)
        except Exception:
            log.exception("index maintenance failed; the shards keep serving as they were")
