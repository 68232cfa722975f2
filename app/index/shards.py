"""FAISS shards: a cache of the SQL embeddings of one model, kept in step with SQL.

Each shard is a `VectorIndex` (app/index/vector_index.py: exact below a size threshold, IVF
with compact codes above it, trained in the background by `maintain`) whose ids are vector
ids: a reference image's id shifted left by `VIEW_BITS`, plus the code of a degraded view
(0: the image itself; see app/encoder/views.py), so a hit maps back to its image without a
lookup. SQL holds a version per (model, shard) that every write bumps; a shard whose loaded
version differs from SQL's is rebuilt from SQL, so neither local files nor another process's
writes are ever trusted blindly.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import ReferenceImage, ReferenceView, ShardVersion
from app.encoder.views import image_of, vector_id
from app.index.vector_index import IndexConfig, VectorIndex
from app.storage.files import atomic_write

# Bumped when what a shard file holds changes meaning (v2: vector ids instead of image ids;
# v3: VectorIndex files), so files of an older release are never loaded as if they were current.
LAYOUT = "v3"

log = logging.getLogger(__name__)


@dataclass
class Shard:
    index: VectorIndex
    version: int
    dirty: bool = False  # changed in memory since last written to disk


class ShardSet:
    def __init__(
        self,
        model_id: str,
        dim: int,
        shard_dir: Path,
        session_factory: Callable[[], Session],
        index_config: IndexConfig | None = None,
    ) -> None:
        self.model_id = model_id
        self.index_config = index_config or IndexConfig()
        self.dim = dim
        self.directory = shard_dir / LAYOUT / re.sub(r"[^A-Za-z0-9._-]", "_", model_id)
        self.session_factory = session_factory
        self.shards: dict[int, Shard] = {}
        self.lock = threading.RLock()
        self.persist_lock = threading.Lock()
        self.rebuilds = 0  # for tests and metrics: how often SQL had to be re-read
        self._maintainer: threading.Thread | None = None

    # ---- bringing shards up to date -------------------------------------------------------
    def sync(self, use_files: bool = False) -> int:
        """Rebuild every shard whose SQL version moved; returns how many were (re)loaded."""
        with self.session_factory() as session:
            versions = dict(
                session.execute(
                    select(ShardVersion.shard, ShardVersion.version).where(
                        ShardVersion.model_id == self.model_id
                    )
                ).all()
            )
        changed = 0
        for shard_no, version in sorted(versions.items()):
            with self.lock:
                current = self.shards.get(shard_no)
                if current is not None and current.version == version:
                    continue
            loaded = self._load_file(shard_no, version) if use_files else None
            shard = loaded or self._build_from_sql(shard_no)
            with self.lock:
                current = self.shards.get(shard_no)
                # A local write may have moved past what we read meanwhile; keep the newer one.
                if current is None or current.version <= shard.version:
                    self.shards[shard_no] = shard
            changed += 1
        return changed

    def _build_from_sql(self, shard_no: int) -> Shard:
        with self.session_factory() as session:
            # Version first: rows read after it are at least as new, so a later sync catches up.
            version = session.scalar(
                select(ShardVersion.version).where(
                    ShardVersion.model_id == self.model_id, ShardVersion.shard == shard_no
                )
            )
            rows = session.execute(
                select(ReferenceImage.id, ReferenceImage.embedding).where(
                    ReferenceImage.model_id == self.model_id, ReferenceImage.shard == shard_no
                )
            ).all()
            views = session.execute(
                select(ReferenceView.image_id, ReferenceView.code, ReferenceView.embedding).where(
                    ReferenceView.model_id == self.model_id, ReferenceView.shard == shard_no
                )
            ).all()
        index = self._empty_index()
        keyed = [(int(vector_id(r[0])), r[1]) for r in rows]
        keyed += [(int(vector_id(v[0], v[1])), v[2]) for v in views]
        if keyed:
            ids = np.fromiter((k for k, _ in keyed), dtype=np.int64, count=len(keyed))
            vectors = np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob in keyed])
            index.add_with_ids(vectors, ids)
        self.rebuilds += 1
        return Shard(index=index, version=int(version or 0), dirty=True)

    def _load_file(self, shard_no: int, version: int) -> Shard | None:
        path = self._path(shard_no, version)
        if not path.is_file():
            return None
        try:
            index = VectorIndex.from_bytes(path.read_bytes(), self.index_config)
        except (OSError, ValueError):
            log.warning("shard file %s unreadable; rebuilding from SQL", path)
            return None
        if not index.compatible(self.index_config):
            log.info("shard file %s has another index type than configured; rebuilding", path)
            return None
        with self.session_factory() as session:
            count = sum(
                session.scalar(
                    select(func.count()).where(
                        table.model_id == self.model_id, table.shard == shard_no
                    )
                )
                or 0
                for table in (ReferenceImage, ReferenceView)
            )
        if index.ntotal != count or index.d != self.dim:
            log.warning("shard file %s disagrees with SQL; rebuilding", path)
            return None
        return Shard(index=index, version=version)

    # ---- local writes, applied after their transaction committed ---------------------------
    # Adds and removals are idempotent (an add first drops the ids it adds), so a write may be
    # applied out of order: it is searchable here at once, and the version only advances when
    # no other write is missing in between. Any gap is closed by the next sync, never inline.
    def apply_added(
        self, shard_no: int, version: int, ids: np.ndarray, vectors: np.ndarray
    ) -> None:
        ids = ids.astype(np.int64)
        with self.lock:
            shard = self.shards.setdefault(shard_no, Shard(self._empty_index(), 0))
            if shard.version >= version:
                return  # a sync already read this write from SQL
            shard.index.remove_ids(ids)
            shard.index.add_with_ids(vectors.astype(np.float32), ids)
            self._advance(shard, version)

    def apply_removed(self, shard_no: int, version: int, ids: np.ndarray) -> None:
        with self.lock:
            shard = self.shards.get(shard_no)
            if shard is None or shard.version >= version:
                return
            shard.index.remove_ids(ids.astype(np.int64))
            self._advance(shard, version)

    @staticmethod
    def _advance(shard: Shard, version: int) -> None:
        shard.dirty = True
        if shard.version == version - 1:
            shard.version = version

    # ---- search ------------------------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, selector: faiss.IDSelector | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k vectors over all shards, merged: (scores, image ids) each (n, k), ids -1 where
        fewer exist. A degraded view's hit is reported as its image, so an image may repeat.
        `selector` (over vector ids) filters inside each shard's search."""
        n = queries.shape[0]
        scores_parts, id_parts = [], []
        with self.lock:
            for shard in self.shards.values():
                if shard.index.ntotal == 0:
                    continue
                scores, ids = shard.index.search(queries, min(k, shard.index.ntotal), selector)
                scores_parts.append(scores)
                id_parts.append(ids)
        if not scores_parts:
            return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
        scores = np.concatenate(scores_parts, axis=1)
        ids = np.concatenate(id_parts, axis=1)
        scores = np.where(ids < 0, -np.inf, scores)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top_scores = np.take_along_axis(scores, order, axis=1)
        top_ids = image_of(np.take_along_axis(ids, order, axis=1))
        if top_ids.shape[1] < k:
            pad = k - top_ids.shape[1]
            top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            top_ids = np.pad(top_ids, ((0, 0), (0, pad)), constant_values=-1)
        return top_scores, top_ids

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

    # ---- persistence -------------------------------------------------------------------------
    def _path(self, shard_no: int, version: int) -> Path:
        return self.directory / f"shard-{shard_no:06d}-v{version}.faiss"  # FAISS inside (npz)

    def persist_dirty(self) -> int:
        """Write changed shards to disk (atomically), one at a time, and drop older files."""
        written = 0
        with self.persist_lock:  # the sync loop and shutdown may both get here
            for shard_no in sorted(self.shards):
                with self.lock:  # searches wait for one shard's serialisation at most
                    shard = self.shards.get(shard_no)
                    if shard is None or not shard.dirty:
                        continue
                    version, blob = shard.version, shard.index.to_bytes()
                    shard.dirty = False
                path = self._path(shard_no, version)
                atomic_write(path, memoryview(blob))
                for old in self.directory.glob(f"shard-{shard_no:06d}-v*.faiss"):
                    if old != path:
                        old.unlink(missing_ok=True)
                written += 1
        return written

    def _empty_index(self) -> VectorIndex:
        return VectorIndex(self.dim, self.index_config)
