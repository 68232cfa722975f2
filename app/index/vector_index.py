"""One shard's vectors: exact search when small, an IVF index (compact codes) when large.

A drop-in for the `IndexIDMap2(IndexFlatIP)` a shard used to be (`add_with_ids` replacing ids
that exist, `remove_ids`, `search`, `ntotal`, `d`), made of three layers:

- `base`: an IVF index (inner product; SQ8 codes by default) trained on the shard's own vectors.
  Never changed by a request: a removal only adds the id to a tombstone set that every search
  filters inside FAISS (an `IDSelector`), so a delete is invisible to the very next search.
- `frozen`: the delta being folded into `base` by a running `maintain()`; searched exactly.
- `delta`: an exact `IndexIDMap2(IndexFlatIP)` that takes every add. Below the ANN threshold it
  is the whole index, so small catalogues keep exact search.

`maintain()` (run by a background thread, never by a request) trains `base` once the shard
crosses the threshold, retrains it when the shard has grown well past what it was trained on,
and otherwise folds the delta into it and drops tombstoned codes. The slow part (k-means,
assigning vectors to lists) runs outside the lock on a snapshot; searches meanwhile use the old
layers plus the delta, and the writes made meanwhile survive the swap.
"""

from __future__ import annotations

import io
import threading

import faiss
import numpy as np

from app.index.config import IndexConfig
from app.index.faiss_calls import (
    as_ivf,
    code_size,
    new_ivf,
    remove_ids,
    search_parameters,
)
from app.index.layers import (
    both,
    contains,
    flat,
    flat_contents,
    hiding,
    ivf_decode,
    ivf_lists,
    merge,
)

FORMAT = 1  # of `to_bytes`; bumped when the layout changes


class VectorIndex:
    def __init__(self, d: int, config: IndexConfig | None = None) -> None:
        self.d = d
        self.config = config or IndexConfig()
        self.base: faiss.IndexIVF | None = None
        self.base_ids = np.zeros(0, np.int64)  # sorted
        self.dead_base: set[int] = set()  # tombstones: ids in base that were removed
        self.trained_size = 0
        self.frozen: faiss.IndexIDMap2 | None = None
        self.frozen_ids = np.zeros(0, np.int64)
        self.dead_frozen: set[int] = set()
        self.delta = flat(d)
        self._lock = threading.RLock()  # the layers; held briefly
        self._maintaining = threading.Lock()  # one maintain() at a time
        self._tombstone_filters: tuple[faiss.IDSelector | None, faiss.IDSelector | None] | None
        self._tombstone_filters = None  # cached selectors that hide the tombstones

    # ---- the IndexIDMap2 surface ---------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        with self._lock:
            base = len(self.base_ids) - len(self.dead_base)
            frozen = len(self.frozen_ids) - len(self.dead_frozen)
            return base + frozen + self.delta.ntotal

    @property
    def is_ann(self) -> bool:
        return self.base is not None

    def add_with_ids(self, vectors: np.ndarray, ids: np.ndarray, replace: bool = True) -> None:
        """Add into the exact delta; `replace`: an id that exists loses its old vector (callers
        that just removed these ids pass False and save a pass over every layer)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            if replace:
                self.remove_ids(ids)
            self.delta.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove_ids(self, ids: np.ndarray | faiss.IDSelector) -> int:
        if isinstance(ids, faiss.IDSelector):
            raise TypeError("VectorIndex.remove_ids takes an array of ids")
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        with self._lock:
            removed = remove_ids(self.delta, ids) if self.delta.ntotal else 0
            for layer_ids, dead in (
                (self.base_ids, self.dead_base),
                (self.frozen_ids, self.dead_frozen),
            ):
                hits = [int(i) for i in ids[contains(layer_ids, ids)] if int(i) not in dead]
                dead.update(hits)
                removed += len(hits)
            if removed:
                self._tombstone_filters = None
            return removed

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live (id, vector), over all layers; IVF vectors decoded from their codes."""
        with self._lock:
            parts = [flat_contents(self.delta)]
            if self.frozen is not None:
                ids, vectors = flat_contents(self.frozen)
                keep = ~np.isin(ids, np.fromiter(self.dead_frozen, np.int64))
                parts.append((ids[keep], vectors[keep]))
            if self.base is not None:
                parts.append(ivf_decode(self.base, self.dead_base))
        return np.concatenate([i for i, _ in parts]), np.concatenate([v for _, v in parts])

    def search(
        self, queries: np.ndarray, k: int, selector: faiss.IDSelector | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product over every layer; `selector` (vector ids) is applied inside
        each FAISS search, so a filter never costs results. Missing results: id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        parts = []
        with self._lock:
            if self._tombstone_filters is None:
                self._tombstone_filters = (
                    hiding(self.dead_base),
                    hiding(self.dead_frozen),
                )
            base_filter, frozen_filter = self._tombstone_filters
            # Python must keep every selector alive while FAISS holds raw pointers to it.
            keep = (base_filter, frozen_filter, selector)
            if self.base is not None:
                sel = both(selector, base_filter)
                params = search_parameters(sel, self.config.nprobe)
                parts.append(self.base.search(queries, k, params=params))
            if self.frozen is not None and self.frozen.ntotal:
                sel = both(selector, frozen_filter)
                parts.append(self._flat_search(self.frozen, queries, k, sel))
            if self.delta.ntotal or not parts:
                parts.append(self._flat_search(self.delta, queries, k, selector))
            del keep
        return merge(parts, k)

    @staticmethod
    def _flat_search(
        index: faiss.IndexIDMap2, queries: np.ndarray, k: int, sel: faiss.IDSelector | None
    ) -> tuple[np.ndarray, np.ndarray]:
        params = search_parameters(sel) if sel is not None else None
        return index.search(queries, k, params=params)

    # ---- background maintenance ----------------------------------------------------------------
    def needs_maintenance(self) -> bool:
        with self._lock:
            if self.frozen is not None:
                return False  # a maintain() is running
            live = self.ntotal
            if self.base is None:
                return self.config.wants_ann(live)
            if live >= self.config.retrain_growth * max(self.trained_size, 1):
                return True
            tombstones = len(self.dead_base)
            return self.delta.ntotal >= self.config.delta_limit or tombstones >= max(
                self.config.delta_limit, len(self.base_ids) // 10
            )

    def maintain(self) -> bool:
        """Train, retrain or compact if due; returns whether anything changed. Blocking: call it
        from a background thread. Searches and writes go on meanwhile."""
        with self._maintaining:
            if not self.needs_maintenance():
                return False
            with self._lock:
                # Freeze the delta: new writes go to a fresh one, removals to tombstones.
                self.frozen, self.delta = self.delta, flat(self.d)
                self.frozen_ids = np.sort(faiss.vector_to_array(self.frozen.id_map))
                self.dead_frozen = set()
                self._tombstone_filters = None
                base, dead_snapshot = self.base, set(self.dead_base)
                live = self.ntotal
                retrain = base is None or live >= self.config.retrain_growth * self.trained_size
            frozen_ids, frozen_vectors = flat_contents(self.frozen)
            try:
                if retrain:
                    self._rebuild(base, dead_snapshot, frozen_ids, frozen_vectors)
                else:
                    self._fold(frozen_ids, frozen_vectors)
            except BaseException:
                with self._lock:  # put the frozen rows back where writes can see them
                    self._unfreeze()
                raise
            return True

    def _rebuild(
        self,
        base: faiss.IndexIVF | None,
        dead_snapshot: set[int],
        frozen_ids: np.ndarray,
        frozen_vectors: np.ndarray,
    ) -> None:
        if base is not None:
            old_ids, old_vectors = ivf_decode(base, dead_snapshot)
            ids = np.concatenate([old_ids, frozen_ids])
            vectors = np.concatenate([old_vectors, frozen_vectors])
            del old_vectors
        else:
            ids, vectors = frozen_ids, frozen_vectors
        ivf = self._train(vectors)
        ivf.add_with_ids(vectors, ids)
        new_ids = np.sort(ids)
        with self._lock:
            # Removals made since the snapshot hit rows now inside the new base.
            since = (self.dead_base - dead_snapshot) | self.dead_frozen
            removed = np.fromiter(since, np.int64, len(since))
            self.dead_base = {int(i) for i in removed[contains(new_ids, removed)]}
            self.base, self.base_ids, self.trained_size = ivf, new_ids, len(ids)
            self._clear_frozen()

    def _fold(self, frozen_ids: np.ndarray, frozen_vectors: np.ndarray) -> None:
        assert self.base is not None
        # Assigning vectors to lists is the costly part; the quantizer never changes between
        # retrains, so it runs outside the lock.
        lists = np.zeros((0, 1), np.int64)
        if len(frozen_ids):
            _, lists = self.base.quantizer.search(frozen_vectors, 1)
        with self._lock:
            base = self.base
            if self.dead_base:
                dead = np.fromiter(self.dead_base, np.int64, len(self.dead_base))
                base.remove_ids(faiss.IDSelectorBatch(dead))
                self.base_ids = self.base_ids[~np.isin(self.base_ids, dead)]
                self.dead_base = set()
            if len(frozen_ids):
                keep = ~np.isin(frozen_ids, np.fromiter(self.dead_frozen, np.int64))
                ids = np.ascontiguousarray(frozen_ids[keep])
                vectors = np.ascontiguousarray(frozen_vectors[keep])
                assign = np.ascontiguousarray(lists[keep].ravel(), dtype=np.int64)
                if len(ids):
                    base.add_core(
                        len(ids), faiss.swig_ptr(vectors), faiss.swig_ptr(ids),
                        faiss.swig_ptr(assign),
                    )  # fmt: skip
                    self.base_ids = np.sort(np.concatenate([self.base_ids, ids]))
            self._clear_frozen()

    def _train(self, vectors: np.ndarray) -> faiss.IndexIVF:
        nlist = self.config.lists_for(len(vectors))
        ivf = new_ivf(self.d, nlist, self.config.codec)
        ivf.train(vectors)
        return ivf

    def _clear_frozen(self) -> None:
        self.frozen, self.frozen_ids, self.dead_frozen = None, np.zeros(0, np.int64), set()
        self._tombstone_filters = None

    def _unfreeze(self) -> None:
        if self.frozen is None:
            return
        ids, vectors = flat_contents(self.frozen)
        keep = ~np.isin(ids, np.fromiter(self.dead_frozen, np.int64))
        newer = faiss.vector_to_array(self.delta.id_map)
        keep &= ~np.isin(ids, newer)  # re-added since: the delta's copy is the current one
        self.delta.add_with_ids(vectors[keep], ids[keep])
        self._clear_frozen()

    # ---- files -----------------------------------------------------------------------------------
    def compatible(self, config: IndexConfig) -> bool:
        """Whether this (loaded) index can serve `config`, or the shard must be rebuilt."""
        if self.base is None:
            return True
        if config.kind == "exact":
            return False
        codec = faiss.index_factory(self.d, f"IVF1,{config.codec}", faiss.METRIC_INNER_PRODUCT)
        return code_size(codec) == code_size(self.base) and type(codec) is type(self.base)

    def to_bytes(self) -> bytes:
        with self._lock:
            ids, vectors = flat_contents(self.delta)
            if self.frozen is not None:
                f_ids, f_vectors = flat_contents(self.frozen)
                keep = ~np.isin(f_ids, np.fromiter(self.dead_frozen, np.int64))
                keep &= ~np.isin(f_ids, ids)
                ids = np.concatenate([ids, f_ids[keep]])
                vectors = np.concatenate([vectors, f_vectors[keep]])
            base = (
                faiss.serialize_index(self.base) if self.base is not None else np.zeros(0, np.uint8)
            )
            dead = np.fromiter(self.dead_base, np.int64, len(self.dead_base))
            trained = self.trained_size
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format=np.int64(FORMAT),
            d=np.int64(self.d),
            base=base,
            dead=dead,
            trained=np.int64(trained),
            ids=ids,
            vectors=vectors.astype(np.float32),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes | memoryview, config: IndexConfig | None = None) -> VectorIndex:
        """Raises ValueError on anything that is not a file `to_bytes` wrote."""
        try:
            data = np.load(io.BytesIO(blob), allow_pickle=False)
            if int(data["format"]) != FORMAT:
                raise ValueError(f"index file format {int(data['format'])}, expected {FORMAT}")
            index = cls(int(data["d"]), config)
            base = data["base"]
            if len(base):
                index.base = as_ivf(faiss.deserialize_index(base))
                index.base_ids = np.sort(
                    np.concatenate(
                        [ids for _, ids, _ in ivf_lists(index.base)] or [np.zeros(0, np.int64)]
                    )
                ).astype(np.int64)
                index.dead_base = {int(i) for i in data["dead"]}
                index.trained_size = int(data["trained"])
            if len(data["ids"]):
                index.delta.add_with_ids(data["vectors"], data["ids"])
            return index
        except (KeyError, OSError, RuntimeError, EOFError) as exc:
            raise ValueError(f"not a vector index file: {exc}") from exc

    def memory_bytes(self) -> int:
        """What the vectors take in memory: codes, ids, centroids, exact rows, tombstones."""
        with self._lock:
            total = (self.delta.ntotal + len(self.frozen_ids)) * (4 * self.d + 8)
            if self.base is not None:
                total += len(self.base_ids) * (self.base.code_size + 8 + 8)  # + sorted copy
                total += self.base.nlist * self.d * 4
            return total + 8 * (len(self.dead_base) + len(self.dead_frozen))
