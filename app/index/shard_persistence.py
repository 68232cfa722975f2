"""Writing a store's shards to their files and loading them back (app/index/shard_files.py).

Files only speed up a start: SQL is the truth, and a start with files replays the log entries
past the position the manifest names. One lock: the sync loop and shutdown may both persist.
"""

from __future__ import annotations

import threading

from app.index.shard_files import ShardFiles
from app.index.shard_store import ShardStore


class ShardPersistence:
    def __init__(self, store: ShardStore, files: ShardFiles) -> None:
        self.store = store
        self.files = files
        self.lock = threading.Lock()

    def persist_dirty(self) -> int:
        """Write changed shards to disk (atomically), one at a time, and drop older files;
        then the manifest naming the log position every file on disk contains."""
        store = self.store
        written = 0
        with self.lock:
            with store.lock:
                # Files written below hold at least this position (shards only move forward);
                # a restart replays the entries after it, which is idempotent.
                position, shard_nos = store.position, sorted(store.shards)
            for shard_no in shard_nos:
                with store.lock:  # searches wait for one shard's serialisation at most
                    shard = store.shards.get(shard_no)
                    if shard is None or not shard.dirty:
                        continue
                    version, blob = shard.version, shard.index.to_bytes()
                    shard.dirty = False
                self.files.write_shard(shard_no, version, blob)
                written += 1
            self.files.write_manifest(position, shard_nos)
        return written

    def load(self) -> bool:
        """Replace the store's shards with the files' (False: no usable files)."""
        loaded = self.files.load()
        if loaded is None:
            return False
        position, shards = loaded
        self.store.replace_all(shards, position)
        return True
