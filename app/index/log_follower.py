"""Keeping a `ShardStore` in step with SQL by following the model's change log.

Every write appends one log entry per model it touched (app/db/changelog.py). A sync applies
only the entries past the store's position, re-reading from SQL the rows of the vector ids they
name; it reads the whole model only on a first start without usable files, or when entries it
needs were pruned (this replica was away longer than the log's retention). SQL is reached
through `ChangeFeed`, which app/db/change_feed.py implements: this package imports no ORM.

Local writes are applied here too, right after their transaction committed, so a replica finds
its own writes at once. One lock: one writer of shard state at a time, sync or local write.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from app.index.shard_files import Shard
from app.index.shard_persistence import ShardPersistence
from app.index.shard_store import ShardStore
from app.index.stored_vectors import as_stored, decode_stacked
from app.index.vector_ids import image_of, vector_id

LOG_BATCH = 2000  # log entries read per round trip while catching up

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Head:
    last_seq: int
    pruned_seq: int


@dataclass(frozen=True)
class LogEntry:
    seq: int
    op: str
    vector_ids: np.ndarray


class Rows(NamedTuple):
    """Embedding rows as columns: image ids, view codes, shard numbers, float16 vectors."""

    image_ids: np.ndarray
    codes: np.ndarray
    shard_nos: np.ndarray
    halves: np.ndarray


class ChangeReader(Protocol):
    """One connection's reads of one model's log and embeddings."""

    def head(self) -> Head: ...

    def entries_after(self, position: int, limit: int) -> list[LogEntry]: ...

    def rows_of(self, image_ids: np.ndarray) -> Rows: ...

    def stream(self) -> Iterator[Rows]: ...

    def count(self) -> int: ...

    def missing_images(self) -> int: ...


class ChangeFeed(Protocol):
    def reading(self) -> contextlib.AbstractContextManager[ChangeReader]: ...


class LogFollower:
    def __init__(self, store: ShardStore, feed: ChangeFeed, files: ShardPersistence) -> None:
        self.store = store
        self.feed = feed
        self.files = files
        self.lock = threading.RLock()  # one writer of shard state at a time
        self.loaded = False
        # Every reference image has a vector of this model (a reindex to it has finished).
        # Latched: once true, images added later by replicas on another model do not take
        # this replica out of service (the next reindex run covers them).
        self.complete = False
        self.rebuilds = 0  # for tests and metrics: how often the whole model was read from SQL

    # ---- following the log -------------------------------------------------------------------
    def sync(self, use_files: bool = False) -> int:
        """Apply what the log holds past our position; returns entries applied (+1 per rebuild).

        One connection for the whole pass: with nothing new it is one indexed read of
        `log_heads`."""
        with self.lock:
            changed = 0
            if not self.loaded:
                changed += self._start(use_files)
            with self.feed.reading() as reader:
                head = reader.head()
                position = self.store.position
                behind = position < head.pruned_seq or position > head.last_seq
                applied = -1 if behind else 0
                if not behind and head.last_seq > position:
                    applied = self._catch_up(reader)
            if applied < 0:  # entries we need were pruned (before or while we read)
                log.warning(
                    "model %s: at log position %d, log holds %d..%d; rebuilding from SQL",
                    self.store.model_id,
                    self.store.position,
                    head.pruned_seq + 1,
                    head.last_seq,
                )
                self._build_from_sql()
                with self.feed.reading() as reader:
                    applied = 1 + max(0, self._catch_up(reader))
            changed += applied
            if not self.complete:
                self._check_complete()
            return changed

    def _start(self, use_files: bool) -> int:
        if use_files and self.files.load():
            # Trust files only if, replayed to a known log position, they hold what SQL holds.
            with self.feed.reading() as reader:
                for _ in range(3):
                    before = reader.head()
                    count = reader.count()
                    if reader.head() == before:
                        break
            position = self.store.position
            ok = before.pruned_seq <= position <= before.last_seq
            with self.feed.reading() as reader:
                caught_up = ok and self._catch_up(reader, until=before.last_seq) >= 0
            if caught_up and self.store.size == count:
                self.loaded = True
                return 0
            log.warning("model %s: shard files disagree with SQL; rebuilding", self.store.model_id)
        self._build_from_sql()
        self.loaded = True
        return 1

    def _build_from_sql(self) -> None:
        """Read every vector of the model in one streamed query, then build each shard with a
        single add (its storage allocated once, not grown chunk by chunk) and swap them in."""
        started = time.perf_counter()
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        with self.feed.reading() as reader:
            # Position first: rows read after it are at least as new; replaying entries past it
            # re-reads their rows, so nothing is lost and nothing doubles.
            position = reader.head().last_seq
            for rows in reader.stream():
                ids = vector_id(rows.image_ids, rows.codes)
                for shard_no in np.unique(rows.shard_nos):
                    mask = rows.shard_nos == shard_no
                    parts[int(shard_no)].append((ids[mask], rows.halves[mask]))
        fresh: dict[int, Shard] = {}
        for shard_no in sorted(parts):
            chunks = parts.pop(shard_no)  # float16 until here: half the memory while reading
            ids = np.concatenate([c[0] for c in chunks])
            vectors = decode_stacked(np.concatenate([c[1] for c in chunks]))
            del chunks
            index = self.store.empty_index()
            index.add_with_ids(vectors, ids)
            fresh[shard_no] = Shard(index, position, dirty=True)
        self.store.replace_all(fresh, position)
        self.rebuilds += 1
        log.info(
            "model %s: %d vectors read from SQL in %.1f s (log position %d)",
            self.store.model_id,
            self.store.size,
            time.perf_counter() - started,
            position,
        )

    def _catch_up(self, reader: ChangeReader, until: int | None = None) -> int:
        """Apply log entries after our position (up to `until`); -1 if one we need is gone."""
        applied = 0
        while True:
            entries = reader.entries_after(self.store.position, LOG_BATCH)
            if until is not None:
                entries = [e for e in entries if e.seq <= until]
            if not entries:
                return applied
            if entries[0].seq != self.store.position + 1:
                return -1
            touched = np.unique(np.concatenate([e.vector_ids for e in entries]))
            self._refresh(reader, touched, entries[-1].seq)
            applied += len(entries)
            if len(entries) < LOG_BATCH:
                return applied

    def _refresh(self, reader: ChangeReader, vector_ids: np.ndarray, seq: int) -> None:
        """Make these vector ids match SQL: drop them, then add back the rows that exist."""
        rows = reader.rows_of(np.unique(image_of(vector_ids)))
        ids = vector_id(rows.image_ids, rows.codes)
        keep = np.isin(ids, vector_ids)  # the image's other views are not this entry's
        vectors = decode_stacked(rows.halves[keep])
        self.store.refresh(vector_ids, rows.shard_nos[keep], ids[keep], vectors, seq)

    def _check_complete(self) -> None:
        with self.feed.reading() as reader:
            if reader.missing_images() == 0:
                # Every image had a vector when counted, but entries committed since this
                # sync's catch-up (a reindex still writing) are not in the shards yet: apply
                # them first, so that ready means the index holds every image.
                self.complete = self._catch_up(reader) >= 0

    # ---- local writes, applied after their transaction committed ---------------------------
    # A local write is searchable here at once. The position only advances when it is the next
    # entry; otherwise another process's entry is missing in between and the next sync applies
    # both (re-reading rows from SQL, so applying ours twice changes nothing).
    def apply_added(
        self, shard_nos: int | np.ndarray, seq: int, ids: np.ndarray, vectors: np.ndarray
    ) -> None:
        """`shard_nos`: one shard for all vectors, or one per vector; `seq`: the write's log
        entry."""
        ids = np.asarray(ids, dtype=np.int64)
        shards = np.broadcast_to(np.asarray(shard_nos, np.int64), ids.shape)
        with self.lock:
            self.store.add_local(shards, seq, ids, as_stored(vectors))

    def apply_removed(self, seq: int, ids: np.ndarray) -> None:
        with self.lock:
            self.store.remove_local(seq, np.asarray(ids, dtype=np.int64))
