"""FAISS shards: a cache of the SQL embeddings of one model, kept in step with SQL.

Each shard is a `VectorIndex` (app/index/vector_index.py: exact below a size threshold, IVF
with compact codes above it, trained in the background by `maintain`) whose ids are vector
ids: a reference image's id shifted left by `VIEW_BITS`, plus the code of a degraded view (0: the
image itself; see app/encoder/views.py), so a hit maps back to its image without a lookup.

The set follows the model's change log (app/db/changelog.py): `position` is the last log entry it
has applied, and a sync applies only the entries after it, re-reading from SQL the rows of the
vector ids they name. It reads the whole model from SQL only when it starts without files or
when the entries it needs were pruned. Shard files record the position they contain (in
`manifest.json`), so a restart replays just what it missed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import psycopg
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.db import changelog
from app.db.models import Embedding
from app.encoder.views import VIEW_BITS, image_of, vector_id
from app.index.image_owners import ImageOwners, LogHeadReads
from app.index.layers import merge
from app.index.shard_files import Shard, ShardFiles
from app.index.stored_vectors import as_stored, decode_stacked, decode_vectors
from app.index.vector_index import IndexConfig, VectorIndex

LOG_BATCH = 2000  # log entries read per round trip while catching up
ID_BATCH = 5000  # image ids per IN (...) when re-reading the rows entries name
STREAM_ROWS = 20_000  # rows per fetch when reading a whole model (server-side cursor)
PRUNE_INTERVAL_S = 300.0  # any replica prunes the log, at most this often
HEARTBEAT_S = 10.0  # replicas table: `retailklip drop-model` waits minutes, not seconds

log = logging.getLogger(__name__)


class ShardSet:
    def __init__(
        self,
        model_id: str,
        dim: int,
        shard_dir: Path,
        session_factory: Callable[[], Session],
        index_config: IndexConfig | None = None,
        log_retention_s: float = 7 * 86400,
    ) -> None:
        self.model_id = model_id
        self.index_config = index_config or IndexConfig()
        self.dim = dim
        self.files = ShardFiles(shard_dir, model_id, dim, self.index_config)
        self.session_factory = session_factory
        self.log_retention_s = log_retention_s
        self.shards: dict[int, Shard] = {}
        self.position = 0  # last change-log entry reflected in the shards
        self.loaded = False
        # Every reference image has a vector of this model (a reindex to it has finished).
        # Latched: once true, images added later by replicas on another model do not take
        # this replica out of service (the next reindex run covers them).
        self.complete = False
        self.replica_id = changelog.new_replica_id()
        self.lock = threading.RLock()  # index contents: searches and mutations
        self.apply_lock = threading.RLock()  # one writer of shard state at a time
        self.persist_lock = threading.Lock()
        self.rebuilds = 0  # for tests and metrics: how often the whole model was read from SQL
        self._last_prune = self._last_beat = -float("inf")
        self._maintainer: threading.Thread | None = None
        self._bitmap: tuple[np.ndarray, np.ndarray] | None = None  # see _bitmap_for
        # The products of indexed images, and reads of the log head that say when those may
        # be trusted (app/index/image_owners.py); forgotten wherever the shards change.
        self.owners = ImageOwners()
        self._head_reader: changelog.HeadReader | None = None  # made on the reading thread
        self.head_reads = LogHeadReads(self._read_head, self._close_head_reader)

    # ---- bringing shards up to date -------------------------------------------------------
    def sync(self, use_files: bool = False) -> int:
        """Apply what the log holds past our position; returns entries applied (+1 per rebuild).

        Rebuilds from SQL only on first start without usable files, or when entries we need
        were pruned (this replica was away longer than the log's retention). One connection
        for the whole pass: with nothing new it is one indexed read of `log_heads`."""
        with self.apply_lock:
            changed = 0
            if not self.loaded:
                changed += self._start(use_files)
            with self.session_factory() as session:
                head = changelog.head(session, self.model_id)
                behind = self.position < head.pruned_seq or self.position > head.last_seq
                applied = -1 if behind else 0
                if not behind and head.last_seq > self.position:
                    applied = self._catch_up(session)
            if applied < 0:  # entries we need were pruned (before or while we read)
                log.warning(
                    "model %s: at log position %d, log holds %d..%d; rebuilding from SQL",
                    self.model_id,
                    self.position,
                    head.pruned_seq + 1,
                    head.last_seq,
                )
                self._build_from_sql()
                with self.session_factory() as session:
                    applied = 1 + max(0, self._catch_up(session))
            changed += applied
            self._housekeeping()
            return changed

    def _read_head(self) -> int:
        if self._head_reader is None:
            with self.session_factory() as session:
                engine = session.get_bind()
            assert isinstance(engine, Engine)
            self._head_reader = changelog.HeadReader(engine, self.model_id)
        return self._head_reader()

    def _close_head_reader(self) -> None:
        if self._head_reader is not None:
            self._head_reader.close()

    def _start(self, use_files: bool) -> int:
        if use_files and self._load_files():
            # Trust files only if, replayed to a known log position, they hold what SQL holds.
            for _ in range(3):
                with self.session_factory() as session:
                    before = changelog.head(session, self.model_id)
                    count = session.scalar(
                        select(func.count())
                        .select_from(Embedding)
                        .where(Embedding.model_id == self.model_id)
                    )
                    after = changelog.head(session, self.model_id)
                if before == after:
                    break
            ok = before.pruned_seq <= self.position <= before.last_seq
            with self.session_factory() as session:
                caught_up = ok and self._catch_up(session, until=before.last_seq) >= 0
            if caught_up and self.size == int(count or 0):
                self.loaded = True
                return 0
            log.warning("model %s: shard files disagree with SQL; rebuilding", self.model_id)
        self._build_from_sql()
        self.loaded = True
        return 1

    def _build_from_sql(self) -> None:
        """Read every vector of the model in one streamed query, then build each shard with a
        single add (its storage allocated once, not grown chunk by chunk) and swap them in."""
        started = time.perf_counter()
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        with self.session_factory() as session:
            # Position first: rows read after it are at least as new; replaying entries past it
            # re-reads their rows, so nothing is lost and nothing doubles.
            position = changelog.head(session, self.model_id).last_seq
            for image_ids, codes, shard_nos, halves in self._stream_model(session):
                ids = vector_id(image_ids, codes)
                for shard_no in np.unique(shard_nos):
                    mask = shard_nos == shard_no
                    parts[int(shard_no)].append((ids[mask], halves[mask]))
        fresh: dict[int, Shard] = {}
        for shard_no in sorted(parts):
            chunks = parts.pop(shard_no)  # float16 until here: half the memory while reading
            ids = np.concatenate([c[0] for c in chunks])
            vectors = decode_stacked(np.concatenate([c[1] for c in chunks]))
            del chunks
            index = self._empty_index()
            index.add_with_ids(vectors, ids)
            fresh[shard_no] = Shard(index, position, dirty=True)
        with self.lock:
            self.shards = fresh
            self.owners.forget_all()
            self.position = position
        self.rebuilds += 1
        log.info(
            "model %s: %d vectors read from SQL in %.1f s (log position %d)",
            self.model_id,
            self.size,
            time.perf_counter() - started,
            position,
        )

    def _stream_model(
        self, session: Session
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """(image ids, codes, shards, float16 vectors) of the model, STREAM_ROWS at a time,
        without ORM objects. On PostgreSQL (psycopg) a named server-side cursor in binary
        format: bytea arrives as raw bytes, not hex text twice their size."""
        connection = session.connection()
        raw = connection.connection.driver_connection
        if isinstance(raw, psycopg.Connection):  # psycopg 3, the driver the project installs
            with raw.cursor(name=f"rk_stream_{self.replica_id}", binary=True) as cursor:
                cursor.itersize = STREAM_ROWS
                cursor.execute(
                    "SELECT image_id, code, shard, vector FROM embeddings WHERE model_id = %s",
                    (self.model_id,),
                )
                while rows := cursor.fetchmany(STREAM_ROWS):
                    yield self._columns(rows)
            return
        result = connection.execute(
            select(Embedding.image_id, Embedding.code, Embedding.shard, Embedding.vector)
            .where(Embedding.model_id == self.model_id)
            .execution_options(stream_results=True, yield_per=STREAM_ROWS)
        )
        for part in result.partitions():
            yield self._columns(part)

    def _columns(
        self, rows: Sequence[Sequence[Any]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        image_ids, codes, shard_nos, blobs = zip(*rows, strict=True)
        halves = np.frombuffer(b"".join(blobs), dtype="<f2").reshape(-1, self.dim)
        return (
            np.array(image_ids, np.int64),
            np.array(codes, np.int64),
            np.array(shard_nos, np.int64),
            halves,
        )

    def _add(
        self,
        shards: dict[int, Shard],
        shard_nos: np.ndarray,
        ids: np.ndarray,
        vectors: np.ndarray,
        position: int,
        replace: bool,
    ) -> None:
        self.owners.forget(np.unique(image_of(ids)).tolist())
        for shard_no in np.unique(shard_nos):
            mask = shard_nos == shard_no
            shard = shards.get(int(shard_no))
            if shard is None:
                shard = shards[int(shard_no)] = Shard(self._empty_index(), position)
            shard.index.add_with_ids(np.ascontiguousarray(vectors[mask]), ids[mask], replace)
            shard.version = max(shard.version, position)
            shard.dirty = True

    def _catch_up(self, session: Session, until: int | None = None) -> int:
        """Apply log entries after our position (up to `until`); -1 if one we need is gone."""
        applied = 0
        while True:
            entries = changelog.entries_after(session, self.model_id, self.position, LOG_BATCH)
            if until is not None:
                entries = [e for e in entries if e.seq <= until]
            if not entries:
                return applied
            if entries[0].seq != self.position + 1:
                return -1
            touched = np.unique(np.concatenate([e.vector_ids for e in entries]))
            self._refresh(session, touched, entries[-1].seq)
            applied += len(entries)
            if len(entries) < LOG_BATCH:
                return applied

    def _refresh(self, session: Session, vector_ids: np.ndarray, seq: int) -> None:
        """Make these vector ids match SQL: drop them, then add back the rows that exist."""
        images = np.unique(image_of(vector_ids))
        rows: list[tuple[int, int, int, bytes]] = []
        for start in range(0, len(images), ID_BATCH):
            rows += session.execute(
                select(Embedding.image_id, Embedding.code, Embedding.shard, Embedding.vector).where(
                    Embedding.model_id == self.model_id,
                    Embedding.image_id.in_(images[start : start + ID_BATCH].tolist()),
                )
            ).all()
        if rows:
            image_ids, codes, shard_nos, blobs = zip(*rows, strict=True)
            ids = vector_id(np.array(image_ids), np.array(codes))
            keep = np.isin(ids, vector_ids)  # the image's other views are not this entry's
            vectors = decode_vectors([b for b, k in zip(blobs, keep, strict=True) if k], self.dim)
            ids, shards_of_rows = ids[keep], np.array(shard_nos, np.int64)[keep]
        with self.lock:
            self._remove(vector_ids, seq)
            if rows and len(ids):
                # Just removed above: nothing to replace.
                self._add(self.shards, shards_of_rows, ids, vectors, seq, False)
            self.position = max(self.position, seq)

    def _remove(self, vector_ids: np.ndarray, seq: int) -> None:
        ids = np.ascontiguousarray(vector_ids, dtype=np.int64)
        self.owners.forget(np.unique(image_of(ids)).tolist())
        for shard in self.shards.values():
            if shard.index.remove_ids(ids):
                shard.version = max(shard.version, seq)
                shard.dirty = True

    def _housekeeping(self) -> None:
        """Readiness; now and then a heartbeat and pruning the log (any replica may)."""
        now = time.monotonic()
        due_beat = now - self._last_beat >= HEARTBEAT_S
        if self.complete and not due_beat:
            return
        with self.session_factory() as session:
            if not self.complete and changelog.missing_images(session, self.model_id) == 0:
                # Every image had a vector when counted, but entries committed since this
                # sync's catch-up (a reindex still writing) are not in the shards yet: apply
                # them first, so that ready means the index holds every image.
                self.complete = self._catch_up(session) >= 0
                due_beat = due_beat or self.complete  # report readiness at once
            if due_beat:
                self._last_beat = now
                changelog.heartbeat(
                    session, self.replica_id, self.model_id, self.position, self.complete
                )
            if now - self._last_prune >= PRUNE_INTERVAL_S:
                self._last_prune = now
                changelog.prune(session, self.log_retention_s)

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
        with self.apply_lock, self.lock:
            if self.position >= seq:
                return  # a sync already applied this write from SQL
            # A vector id lives in one shard (its image's), so replacing there is enough.
            self._add(self.shards, shards, ids, as_stored(vectors), seq, replace=True)
            if self.position == seq - 1:
                self.position = seq

    def apply_removed(self, seq: int, ids: np.ndarray) -> None:
        with self.apply_lock, self.lock:
            if self.position >= seq:
                return
            self._remove(np.asarray(ids, dtype=np.int64), seq)
            if self.position == seq - 1:
                self.position = seq

    # ---- search ------------------------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k vectors over all shards, merged: (scores, image ids) each (n, k), ids -1 where
        fewer exist. A degraded view's hit is reported as its image, so an image may repeat.

        `allowed`: image ids the search may return (None: all). FAISS skips the others while it
        scans, so k hits come back whenever k allowed vectors exist."""
        n = queries.shape[0]
        scores_parts, id_parts = [], []
        selector = None
        if allowed is not None:
            if len(allowed) == 0:
                return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
            bitmap = self._bitmap_for(allowed)  # must outlive the search: FAISS keeps a pointer
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        with self.lock:
            for shard in self.shards.values():
                if shard.index.ntotal == 0:
                    continue
                scores, ids = shard.index.search(queries, min(k, shard.index.ntotal), selector)
                scores_parts.append(scores)
                id_parts.append(ids)
        if not scores_parts:
            return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
        top_scores, top_vector_ids = merge(list(zip(scores_parts, id_parts, strict=True)), k)
        top_scores = np.where(top_vector_ids < 0, -np.inf, top_scores)  # also for one part
        top_ids = image_of(top_vector_ids)
        if top_ids.shape[1] < k:
            pad = k - top_ids.shape[1]
            top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            top_ids = np.pad(top_ids, ((0, 0), (0, pad)), constant_values=-1)
        return top_scores, top_ids

    def _bitmap_for(self, allowed: np.ndarray) -> np.ndarray:
        """The FAISS bitmap of an allowed-id array, built once per array: the scope cache
        (app/recognition/scopes.py) hands the same array object to every search until SQL moves."""
        cached = self._bitmap
        if cached is None or cached[0] is not allowed:  # the reference pins the identity
            cached = self._bitmap = (allowed, allowed_bitmap(allowed))
        return cached[1]

    @property
    def size(self) -> int:
        # No lock: called on the event loop; a momentarily stale count is fine for probes.
        return sum(s.index.ntotal for s in list(self.shards.values()))

    # ---- background maintenance (index training and compaction) ----------------------------
    def maintain(self) -> int:
        """Train, retrain or compact every shard index that is due; returns how many changed.
        Blocking (k-means over a large shard takes seconds to minutes): never call it from a
        request; `maintain_in_background` runs it on a thread of its own."""
        changed = 0
        with self.lock:
            shards = list(self.shards.values())
        for shard in shards:
            if shard.index.needs_maintenance() and shard.index.maintain():
                with self.lock:
                    shard.dirty = True
                changed += 1
        return changed

    def maintain_in_background(self) -> bool:
        """Start `maintain` on a daemon thread unless one is running or nothing is due."""
        with self.lock:
            if self._maintainer is not None and self._maintainer.is_alive():
                return False
            if not any(s.index.needs_maintenance() for s in self.shards.values()):
                return False
            self._maintainer = threading.Thread(
                target=self._maintain_logged, name="shard-maintenance", daemon=True
            )
            self._maintainer.start()
            return True

    def wait_for_maintenance(self, timeout: float | None = None) -> bool:
        """For tests, benchmarks and shutdown: True once no maintenance thread runs."""
        thread = self._maintainer
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

    @property
    def memory_bytes(self) -> int:
        return sum(s.index.memory_bytes() for s in list(self.shards.values()))

    # ---- persistence (app/index/shard_files.py) ------------------------------------------------
    def persist_dirty(self) -> int:
        """Write changed shards to disk (atomically), one at a time, and drop older files;
        then the manifest naming the log position every file on disk contains."""
        written = 0
        with self.persist_lock:  # the sync loop and shutdown may both get here
            with self.lock:
                # Files written below hold at least this position (shards only move forward);
                # a restart replays the entries after it, which is idempotent.
                position, shard_nos = self.position, sorted(self.shards)
            for shard_no in shard_nos:
                with self.lock:  # searches wait for one shard's serialisation at most
                    shard = self.shards.get(shard_no)
                    if shard is None or not shard.dirty:
                        continue
                    version, blob = shard.version, shard.index.to_bytes()
                    shard.dirty = False
                self.files.write_shard(shard_no, version, blob)
                written += 1
            self.files.write_manifest(position, shard_nos)
        return written

    def _load_files(self) -> bool:
        loaded = self.files.load()
        if loaded is None:
            return False
        with self.lock:
            self.position, self.shards = loaded
            self.owners.forget_all()
        return True

    def _empty_index(self) -> VectorIndex:
        return VectorIndex(self.dim, self.index_config)


def allowed_bitmap(image_ids: np.ndarray) -> np.ndarray:
    """FAISS's IDSelectorBitmap tests bit (id & 7) of byte (id >> 3); a vector id is
    image_id << VIEW_BITS | view with VIEW_BITS = 3, so byte `image_id` set to 0xFF admits an
    image and every derived view of it."""
    assert VIEW_BITS == 3, "the bitmap layout relies on 8 view codes per image"
    bitmap = np.zeros(int(image_ids.max()) + 1, dtype=np.uint8)
    bitmap[image_ids] = 0xFF
    return bitmap
