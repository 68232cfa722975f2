"""The shards of one model in memory: FAISS search over them, and the changes that move them.

Each shard is a `VectorIndex` (app/index/vector_index.py: exact below a size threshold, IVF with
compact codes above it) whose ids are vector ids (app/index/vector_ids.py). `position` is the
last change-log entry the shards reflect. Who applies changes (the log follower, local writes),
persists them and trains them is decided elsewhere; this class only keeps the contents
consistent under its one lock and tells listeners which images changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import faiss
import numpy as np

from app.index.config import IndexConfig
from app.index.layers import merge
from app.index.shard_files import Shard
from app.index.vector_ids import allowed_bitmap, image_of
from app.index.vector_index import VectorIndex

# Told the image ids whose vectors changed, or None when every shard was replaced.
ChangeListener = Callable[[list[int] | None], None]


class ShardStore:
    def __init__(self, model_id: str, dim: int, index_config: IndexConfig | None = None) -> None:
        self.model_id = model_id
        self.dim = dim
        self.index_config = index_config or IndexConfig()
        self.shards: dict[int, Shard] = {}
        self.position = 0  # last change-log entry reflected in the shards
        self.lock = threading.RLock()  # contents: searches, changes, serialisation
        self._listeners: list[ChangeListener] = []
        self._bitmap: tuple[np.ndarray, np.ndarray] | None = None  # see _bitmap_for

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener` under the lock whenever shard contents change."""
        self._listeners.append(listener)

    def _changed(self, image_ids: list[int] | None) -> None:
        for listener in self._listeners:
            listener(image_ids)

    # ---- changes -----------------------------------------------------------------------------
    def replace_all(self, shards: dict[int, Shard], position: int) -> None:
        with self.lock:
            self.shards = shards
            self.position = position
            self._changed(None)

    def refresh(
        self,
        vector_ids: np.ndarray,
        shard_nos: np.ndarray,
        ids: np.ndarray,
        vectors: np.ndarray,
        seq: int,
    ) -> None:
        """Make `vector_ids` hold exactly the rows given (`ids` in `shard_nos`, a subset of
        them, possibly empty), as of log entry `seq`."""
        with self.lock:
            self._remove(vector_ids, seq)
            if len(ids):
                self._add(shard_nos, ids, vectors, seq, replace=False)  # just removed above
            self.position = max(self.position, seq)

    def add_local(
        self, shard_nos: np.ndarray, seq: int, ids: np.ndarray, vectors: np.ndarray
    ) -> None:
        """A local write's vectors, after its transaction committed (see `LogFollower`)."""
        with self.lock:
            if self.position >= seq:
                return  # a sync already applied this write from SQL
            # A vector id lives in one shard (its image's), so replacing there is enough.
            self._add(shard_nos, ids, vectors, seq, replace=True)
            if self.position == seq - 1:
                self.position = seq

    def remove_local(self, seq: int, ids: np.ndarray) -> None:
        with self.lock:
            if self.position >= seq:
                return
            self._remove(ids, seq)
            if self.position == seq - 1:
                self.position = seq

    def _add(
        self,
        shard_nos: np.ndarray,
        ids: np.ndarray,
        vectors: np.ndarray,
        position: int,
        replace: bool,
    ) -> None:
        self._changed(np.unique(image_of(ids)).tolist())
        for shard_no in np.unique(shard_nos):
            mask = shard_nos == shard_no
            shard = self.shards.get(int(shard_no))
            if shard is None:
                shard = self.shards[int(shard_no)] = Shard(self.empty_index(), position)
            shard.index.add_with_ids(np.ascontiguousarray(vectors[mask]), ids[mask], replace)
            shard.version = max(shard.version, position)
            shard.dirty = True

    def _remove(self, vector_ids: np.ndarray, seq: int) -> None:
        ids = np.ascontiguousarray(vector_ids, dtype=np.int64)
        self._changed(np.unique(image_of(ids)).tolist())
        for shard in self.shards.values():
            if shard.index.remove_ids(ids):
                shard.version = max(shard.version, seq)
                shard.dirty = True

    def empty_index(self) -> VectorIndex:
        return VectorIndex(self.dim, self.index_config)

    # ---- search ------------------------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k vectors over all shards, merged: (scores, image ids) each (n, k), ids -1 where
        fewer exist. A degraded view's hit is reported as its image, so an image may repeat.

        `allowed`: image ids the search may return (None: all). FAISS skips the others while it
        scans, so k hits come back whenever k allowed vectors exist."""
        n = queries.shape[0]
        empty = np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
        selector = None
        if allowed is not None:
            if len(allowed) == 0:
                return empty
            bitmap = self._bitmap_for(allowed)  # must outlive the search: FAISS keeps a pointer
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        parts = []
        with self.lock:
            for shard in self.shards.values():
                if shard.index.ntotal == 0:
                    continue
                parts.append(shard.index.search(queries, min(k, shard.index.ntotal), selector))
        if not parts:
            return empty
        top_scores, top_vector_ids = merge(parts, k)
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

    # ---- sizes (no lock: read on the event loop; a momentarily stale count is fine) -----------
    @property
    def size(self) -> int:
        return sum(s.index.ntotal for s in list(self.shards.values()))

    @property
    def memory_bytes(self) -> int:
        return sum(s.index.memory_bytes() for s in list(self.shards.values()))

    def shards_now(self) -> Iterable[Shard]:
        with self.lock:
            return list(self.shards.values())
