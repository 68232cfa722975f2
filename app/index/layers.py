"""FAISS helpers for the layers of a `VectorIndex`: exact flat indexes, IVF lists, selectors."""

from __future__ import annotations

import faiss
import numpy as np

from app.index.faiss_calls import coarse_code_size, code_size, inverted_lists


def flat(d: int) -> faiss.IndexIDMap2:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(d))


def flat_contents(index: faiss.IndexIDMap2) -> tuple[np.ndarray, np.ndarray]:
    if index.ntotal == 0:
        return np.zeros(0, np.int64), np.zeros((0, index.d), np.float32)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    return ids, index.index.reconstruct_n(0, index.ntotal)


def ivf_lists(ivf: faiss.IndexIVF) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(list number, ids, codes) of every non-empty inverted list."""
    out = []
    lists = inverted_lists(ivf)
    width = code_size(ivf)
    for list_no in range(ivf.nlist):
        n = lists.list_size(list_no)
        if n:
            ids = faiss.rev_swig_ptr(lists.get_ids(list_no), n).copy()
            codes = faiss.rev_swig_ptr(lists.get_codes(list_no), n * width).copy()
            out.append((list_no, ids, codes.reshape(n, width)))
    return out


def ivf_decode(ivf: faiss.IndexIVF, dead: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """Live ids and their decoded vectors (codes are lossy: SQ8 differs from float32 by ~1e-3)."""
    id_parts, vec_parts = [], []
    width = coarse_code_size(ivf)
    for list_no, ids, codes in ivf_lists(ivf):
        keep = ~np.isin(ids, np.fromiter(dead, np.int64, len(dead))) if dead else slice(None)
        ids, codes = ids[keep], codes[keep]
        if len(ids) == 0:
            continue
        # Stand-alone codes are the list number (little endian) followed by the list's code.
        prefix = np.frombuffer(int(list_no).to_bytes(width, "little"), np.uint8)
        standalone = np.hstack([np.broadcast_to(prefix, (len(ids), width)), codes])
        id_parts.append(ids)
        vec_parts.append(ivf.sa_decode(np.ascontiguousarray(standalone)))
    if not id_parts:
        return np.zeros(0, np.int64), np.zeros((0, ivf.d), np.float32)
    return np.concatenate(id_parts), np.concatenate(vec_parts)


def selector_of(ids: set[int]) -> faiss.IDSelector | None:
    if not ids:
        return None
    return faiss.IDSelectorBatch(np.fromiter(ids, np.int64, len(ids)))


def hiding(dead: set[int]) -> faiss.IDSelector | None:
    """A selector that hides these ids (tombstones), or None when there are none."""
    inner = selector_of(dead)
    return None if inner is None else faiss.IDSelectorNot(inner)


def both(a: faiss.IDSelector | None, b: faiss.IDSelector | None) -> faiss.IDSelector | None:
    if a is None or b is None:
        return a or b
    return faiss.IDSelectorAnd(a, b)


def contains(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    found: np.ndarray = sorted_ids[pos] == ids
    return found


def merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    if len(parts) == 1:
        scores, ids = parts[0]
    else:
        scores = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        scores = np.where(ids < 0, -np.inf, scores)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(scores, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
    return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)
