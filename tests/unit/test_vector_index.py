"""VectorIndex: exact below the threshold, IVF above; deletes, files and background rebuilds.

The ANN-against-exact test runs on real embeddings: shared-data images through the shipped
model, replicated with small noise past a low ANN threshold, queried with held-out photos.
"""

from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest

from app.encoder.torch_encoder import load_encoder
from app.index.config import IndexConfig
from app.index.vector_index import VectorIndex
from tests.support.paths import GROCERY, GROZI
from training.data import load_image, read_grocery, read_grozi

D = 64


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, seed: int = 0, d: int = D) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, n // 50), d))
    return unit(centres[rng.integers(0, len(centres), n)] + 0.3 * rng.standard_normal((n, d)))


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]]


ANN = IndexConfig(kind="auto", threshold=1_000, nlist=32, nprobe=32, delta_limit=64)


def trained(n: int = 3_000, config: IndexConfig = ANN) -> tuple[VectorIndex, np.ndarray]:
    index = VectorIndex(D, config)
    vectors = clustered(n)
    index.add_with_ids(vectors, np.arange(n, dtype=np.int64) * 8)
    assert not index.is_ann and index.needs_maintenance()
    assert index.maintain() and index.is_ann
    return index, vectors


@pytest.fixture(scope="module")
def real_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """Catalogue shots as references, shelf/test photos (never references) as queries."""
    encoder = load_encoder("retailklip-lite0-shelf", "cpu")
    refs = [*read_grocery(GROCERY, "iconic")[:30], *read_grozi(GROZI, "catalogue")[:30]]
    queries = [*read_grocery(GROCERY, "test")[::100], *read_grozi(GROZI, "shelf", 1)[:25]]
    embed = lambda samples: encoder.embed([load_image(s.path) for s in samples])  # noqa: E731
    return embed(refs), embed(queries)


def test_ann_top1_matches_exact_on_real_embeddings(real_embeddings) -> None:
    refs, queries = real_embeddings
    rng = np.random.default_rng(0)
    copies = refs[rng.integers(0, len(refs), 6_000)]
    copies = unit(copies + 0.008 * rng.standard_normal(copies.shape))  # bench/scale_data.py
    vectors = np.concatenate([refs, copies])
    ids = np.arange(len(vectors), dtype=np.int64) * 8
    config = IndexConfig(kind="auto", threshold=2_000, codec="SQ8", nprobe=16)
    index = VectorIndex(vectors.shape[1], config)
    index.add_with_ids(vectors, ids)
    exact_scores, exact_ids = index.search(queries, 5)  # still exact: not maintained yet
    assert not index.is_ann
    assert np.array_equal(exact_ids, exact_top(vectors, ids, queries, 5))
    assert index.maintain() and index.is_ann and index.delta.ntotal == 0
    scores, found = index.search(queries, 5)
    assert index.base.nlist >= 64  # really an IVF with many lists, not one big list
    assert (found[:, 0] == exact_ids[:, 0]).mean() >= 0.99
    assert np.abs(scores[:, 0] - exact_scores[:, 0]).max() < 0.01  # SQ8 distance error


def test_exact_below_threshold_and_kind_exact_never_trains() -> None:
    small = VectorIndex(D, IndexConfig(threshold=5_000))
    small.add_with_ids(clustered(2_000), np.arange(2_000))
    assert not small.needs_maintenance()
    forced = VectorIndex(D, IndexConfig(kind="exact"))
    forced.add_with_ids(clustered(3_000), np.arange(3_000))
    assert not forced.needs_maintenance() and not forced.maintain() and not forced.is_ann


def test_replacing_an_id_keeps_one_vector() -> None:
    index, vectors = trained()
    new = unit(-vectors[:1])
    index.add_with_ids(new, np.array([0]))
    assert index.ntotal == 3_000
    _, found = index.search(new, 3)
    assert found[0, 0] == 0 and list(found[0]).count(0) == 1
    _, found = index.search(vectors[:1], 1)
    assert found[0, 0] != 0  # the old vector of id 0 is gone


@pytest.mark.parametrize("ann", [False, True])
def test_delete_is_invisible_to_the_next_search(ann: bool) -> None:
    if ann:
        index, vectors = trained()
    else:
        index, vectors = VectorIndex(D), clustered(500)
        index.add_with_ids(vectors, np.arange(500, dtype=np.int64) * 8)
    query = vectors[7:8]
    assert index.search(query, 1)[1][0, 0] == 7 * 8
    assert index.remove_ids(np.array([7 * 8, 10**9])) == 1
    _, found = index.search(query, 50)
    assert 7 * 8 not in found
    assert index.ntotal == len(vectors) - 1


def test_selector_is_honoured_inside_exact_and_ann_search() -> None:
    exact = VectorIndex(D)
    vectors = clustered(3_000)
    ids = np.arange(3_000, dtype=np.int64) * 8
    exact.add_with_ids(vectors, ids)
    ann, _ = trained()
    allowed = ids[::10]  # 300 allowed vectors, none of them the query's own
    for index in (exact, ann):
        selector = faiss.IDSelectorBatch(allowed)
        _, found = index.search(vectors[1:2], 20, selector)
        assert len(found[0][found[0] >= 0]) == 20 and set(found[0]) <= set(allowed)
        assert found[0, 0] == exact_top(vectors[::10], allowed, vectors[1:2], 1)[0, 0]


def test_fold_and_compaction_keep_everything_searchable() -> None:
    index, vectors = trained()
    extra = clustered(100, seed=1)
    extra_ids = 100_000 + np.arange(100, dtype=np.int64)
    index.add_with_ids(extra, extra_ids)
    index.remove_ids(np.arange(0, 800, 8))  # 100 tombstones
    assert index.needs_maintenance() and index.maintain()
    assert index.delta.ntotal == 0 and not index.dead_base
    assert index.ntotal == 3_000
    assert index.search(extra[5:6], 1)[1][0, 0] == extra_ids[5]
    _, found = index.search(vectors[:100], 10)
    assert not np.isin(found, np.arange(0, 800, 8)).any()


@pytest.mark.parametrize("ann", [False, True])
def test_files_round_trip(ann: bool) -> None:
    index, vectors = trained() if ann else (VectorIndex(D), clustered(300))
    if not ann:
        index.add_with_ids(vectors, np.arange(300, dtype=np.int64))
    index.remove_ids(np.array([0, 8]))
    index.add_with_ids(unit(np.ones((1, D))), np.array([999_999]))
    before = index.search(vectors[:20], 5)
    loaded = VectorIndex.from_bytes(index.to_bytes(), index.config)
    assert loaded.ntotal == index.ntotal and loaded.is_ann == ann
    after = loaded.search(vectors[:20], 5)
    assert np.array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], rtol=1e-6)
    assert loaded.compatible(index.config)
    assert loaded.compatible(IndexConfig(kind="exact")) == (not ann)
    with pytest.raises(ValueError):
        VectorIndex.from_bytes(b"not an index")


def test_rebuild_in_background_loses_no_write_made_meanwhile() -> None:
    """Writes and deletes made while k-means runs survive the swap to the new IVF index."""
    n = 20_000
    index = VectorIndex(D, IndexConfig(threshold=1_000, nlist=256, nprobe=256))
    vectors = clustered(n)
    index.add_with_ids(vectors, np.arange(n, dtype=np.int64))
    started, release = threading.Event(), threading.Event()
    train = index._train

    def slow_train(rows: np.ndarray) -> faiss.IndexIVF:
        started.set()
        release.wait(30)  # hold the rebuild open while writes happen
        return train(rows)

    index._train = slow_train  # type: ignore[method-assign]
    worker = threading.Thread(target=index.maintain)
    worker.start()
    assert started.wait(30)
    added = clustered(50, seed=2)
    added_ids = 500_000 + np.arange(50, dtype=np.int64)
    index.add_with_ids(added, added_ids)  # goes to the new delta
    index.remove_ids(np.arange(100))  # hits the frozen rows being trained on
    replaced = unit(-vectors[200:201])
    index.add_with_ids(replaced, np.array([200]))
    # Searches during the rebuild see the frozen rows plus the delta, minus the removals.
    assert index.search(added[:1], 1)[1][0, 0] == added_ids[0]
    assert not np.isin(index.search(vectors[:100], 5)[1], np.arange(100)).any()
    release.set()
    worker.join(60)
    assert index.is_ann and index.frozen is None
    assert index.ntotal == n - 100 + 50
    assert index.search(added[:1], 1)[1][0, 0] == added_ids[0]
    assert not np.isin(index.search(vectors[:100], 5)[1], np.arange(100)).any()
    assert index.search(replaced, 1)[1][0, 0] == 200
    assert index.search(vectors[200:201], 1)[1][0, 0] != 200


def test_retrain_after_growth_keeps_every_vector() -> None:
    """Past 4x its trained size a shard is retrained on its decoded codes plus the delta."""
    index, vectors = trained(1_500, IndexConfig(threshold=1_000, nprobe=64, delta_limit=64))
    more = clustered(5_000, seed=3)
    more_ids = 1_000_000 + np.arange(5_000, dtype=np.int64)
    index.add_with_ids(more, more_ids)
    index.remove_ids(np.arange(0, 80, 8))  # 10 tombstones in the old base
    old_lists = index.base.nlist
    assert index.needs_maintenance() and index.maintain()
    assert index.trained_size == 1_500 - 10 + 5_000 and index.base.nlist > old_lists
    assert index.ntotal == 6_490 and index.delta.ntotal == 0 and not index.dead_base
    assert np.array_equal(index.search(more[:200], 1)[1][:, 0], more_ids[:200])
    _, found = index.search(vectors[10:200], 1)
    assert (found[:, 0] == np.arange(10, 200) * 8).mean() >= 0.99  # decoded SQ8, not float32
    assert not np.isin(index.search(vectors[:10], 20)[1], np.arange(0, 80, 8)).any()
