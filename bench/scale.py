"""Scale benchmark: N reference vectors in PostgreSQL, one replica's index and its neighbours.

    nice -n 10 python -m bench.scale --refs 200000 --json

References are real embeddings (bench/scale_data.py: the shared data sets through the shipped
model) replicated with small noise to N vectors; queries are real held-out photos. One run prints:
- search p50 / p99 per query, exact (the shards before training) against ANN (after
  `ShardMaintenance.maintain`), through `ShardStore.search` with the k that /classify asks for;
- recall@1 / @5 of the ANN answer against the exact answer, over image ids;
- index memory per replica (exact float32 against the ANN codes);
- start-up from SQL (`IndexSync.sync` on PostgreSQL; ready means searchable, exact until the
  background training finishes, whose time is shown too) and from the shard files;
- catch-up: a second replica (its own Replica and IndexSync) writes one image, the first syncs;
- registration through HTTP (`retailklip serve`, POST /products) against the encoder's own
  throughput on the same images (with the degraded views the service stores);
- what each compact vector format costs in top-1 / top-5 on both shared data sets.
With --json the last line is one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import faiss
import httpx
import numpy as np
import torch
from tqdm import tqdm

from app.catalogue.products import NewImage
from app.db.session import make_engine, make_session_factory
from app.index.config import IndexConfig
from app.recognition.search import MIN_FETCH
from app.runtime.index_sync import IndexSync
from app.storage.blobs import FileBlobStore
from bench.scale_data import GROCERY, MODEL, real_set, replicate
from bench.scale_sql import CODES, bulk_load, fresh_database
from tests.support.replicas import Replica
from tests.support.servers import quiet_server

ROOT = Path(__file__).resolve().parent.parent

K = MIN_FETCH * len(CODES)  # what /classify fetches for top_k=5 with two reference views
FORMATS = ("Flat", "SQfp16", "SQ8", "SQ6", "SQ4", "PQ160", "PCA512,SQ8", "PCA256,SQ8")


def timed_search(shards: IndexSync, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    found, times = [], []
    for row in tqdm(queries, desc="search", leave=False):
        begin = time.perf_counter()
        _, ids = shards.store.search(row[None], K)
        times.append(1000 * (time.perf_counter() - begin))
        found.append(ids[0])
    return np.stack(found), times


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def recall(exact: np.ndarray, ann: np.ndarray) -> tuple[float, float]:
    at1 = float((exact[:, 0] == ann[:, 0]).mean())
    at5 = float(
        np.mean([len(set(e[:5]) & set(a[:5])) / 5 for e, a in zip(exact, ann, strict=True)])
    )
    return at1, at5


def nprobe_sweep(shards: IndexSync, queries: np.ndarray, exact: np.ndarray) -> list[dict]:
    """The INDEX_NPROBE trade-off: recall@1 and p50 per setting, same shards, same queries."""
    rows = []
    configs = {no: shard.index.config for no, shard in shards.store.shards.items()}
    for nprobe in (4, 8, 16, 32, 64, 128):
        for no, shard in shards.store.shards.items():
            shard.index.config = replace(configs[no], nprobe=nprobe)
        found, ms = timed_search(shards, queries)
        at1, at5 = recall(exact, found)
        rows.append(
            {"nprobe": nprobe, "p50_ms": pct(ms, 50), "recall_at_1": at1, "recall_at_5": at5}
        )
    for no, shard in shards.store.shards.items():
        shard.index.config = configs[no]
    return rows


def catchup(
    url: str, shards: IndexSync, vector: np.ndarray, blob_dir: Path, capacity: int
) -> float:
    """A second replica registers one image; returns ms until the first one has it."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    other = IndexSync.open(shards.model_id, shards.store.dim, blob_dir / "other-shards", factory)
    catalogue = Replica.of(factory, FileBlobStore(blob_dir), other, shard_capacity=capacity)
    image = NewImage(os.urandom(64), os.urandom(32).hex(), "jpeg", 10, 10, vector)
    catalogue.create_product("scale-catchup", "written by the other replica", {}, [image])
    begin = time.perf_counter()
    shards.sync()
    elapsed = 1000 * (time.perf_counter() - begin)
    _, ids = shards.store.search(vector[None], 1)
    engine.dispose()
    assert ids[0, 0] > 0, "the remote write is not searchable after sync"
    return elapsed


def registration(n: int, concurrency: int = 4) -> dict[str, float]:
    """Images per second through POST /products (fresh PostgreSQL, shipped model) and through
    the encoder alone (each image with its degraded views, as the service embeds it)."""
    from app.encoder.torch_encoder import load_encoder
    from app.encoder.views import degraded_views
    from training.data import load_image, read_grocery

    # The search timings pin OpenMP to one thread, and torch may share that runtime: give the
    # encoder the threads the service's encoder would have.
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    torch.set_num_threads(os.cpu_count() or 1)
    samples = read_grocery(GROCERY, "test")[:: max(1, 2485 // n)][:n]
    payloads = [s.path.read_bytes() for s in samples]
    encoder = load_encoder(MODEL, "cpu")
    images = [load_image(s.path) for s in samples]

    def encoder_rate() -> float:
        begin = time.perf_counter()
        for start in range(0, len(images), 16):
            batch = images[start : start + 16]
            views = [v for i in batch for v in degraded_views(i, ("jpeg25", "dark"))]
            encoder.embed(batch + views)
        return len(images) / (time.perf_counter() - begin)

    # Before and after the HTTP run, best of the two: the machine is shared, so one reading
    # taken while something else ran would flatter the service.
    before = encoder_rate()
    with fresh_database() as url, tempfile.TemporaryDirectory() as data:
        settings = {"data_dir": data, "database_url": url, "model": MODEL, "device": "cpu"}
        server = quiet_server(settings, Path(data) / "server.log").start()
        try:
            base = server.url

            def post(i: int) -> int:
                files = {"images": (f"{i}.jpg", io.BytesIO(payloads[i]), "image/jpeg")}
                data = {"sku": f"reg-{i}", "name": f"registered {i}"}
                return httpx.post(
                    f"{base}/products", data=data, files=files, timeout=120
                ).status_code

            begin = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                codes = list(tqdm(pool.map(post, range(n)), total=n, desc="POST", leave=False))
            http_rate = n / (time.perf_counter() - begin)
            assert codes.count(201) == n, f"registrations failed: {set(codes)}"
        finally:
            server.stop()
    best = max(before, encoder_rate())
    return {"http_images_per_s": http_rate, "encoder_images_per_s": best}


def format_costs(real) -> list[dict[str, object]]:
    """Top-1 / top-5 per vector format on both data sets; codecs trained on all real refs."""
    rows = []
    for spec in FORMATS:
        codec = faiss.index_factory(real.references.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
        if hasattr(codec, "pq"):
            codec.pq.cp.min_points_per_centroid = 1  # ~2k real rows for 256 centroids: fine here
            codec.do_polysemous_training = False  # minutes of annealing, for Hamming filtering
        codec.train(real.references)
        row: dict[str, object] = {"format": spec, "bytes_per_vector": codec.sa_code_size()}
        for name, (gallery, labels, queries, query_labels) in real.splits.items():
            index = faiss.clone_index(codec)
            index.add(gallery)
            _, found = index.search(queries, min(200, len(gallery)))
            labels = np.asarray(labels)
            top1 = top5 = 0
            for row_ids, truth in zip(found, query_labels, strict=True):
                ranked = list(dict.fromkeys(labels[row_ids[row_ids >= 0]]))
                top1 += ranked[:1] == [truth]
                top5 += truth in ranked[:5]
            row[name] = (top1 / len(queries), top5 / len(queries))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refs", type=int, default=100_000, help="reference vectors")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--shard-capacity", type=int, default=100_000, help="images per shard")
    parser.add_argument("--codec", default="SQ8")
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--register", type=int, default=64, help="images POSTed (0: skip)")
    parser.add_argument("--skip-formats", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)  # one query, one core: what a request gets on a busy replica

    real = real_set()
    rng = np.random.default_rng(1)
    queries = real.queries[rng.permutation(len(real.queries))[: args.queries]]
    vectors = replicate(real.references, args.refs)
    config = IndexConfig(kind="auto", codec=args.codec, nprobe=args.nprobe)
    out: dict[str, object] = {"refs": args.refs, "real_references": len(real.references)}
    with fresh_database() as url, tempfile.TemporaryDirectory() as tmp:
        bulk_load(url, vectors, real.model_id, args.shard_capacity)
        del vectors
        engine = make_engine(url)
        factory = make_session_factory(engine)
        shards = IndexSync.open(real.model_id, real.references.shape[1], Path(tmp), factory, config)
        begin = time.perf_counter()
        shards.sync()
        out["startup_sql_s"] = time.perf_counter() - begin
        out["shards"] = len(shards.store.shards)
        out["bytes_exact"] = shards.store.memory_bytes
        exact, exact_ms = timed_search(shards, queries)
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # training gets the machine, as it would
        begin = time.perf_counter()
        shards.maintenance.maintain()
        out["ann_train_s"] = time.perf_counter() - begin
        faiss.omp_set_num_threads(1)
        out["bytes_per_replica"] = shards.store.memory_bytes
        ann, ann_ms = timed_search(shards, queries)
        out["search_p50_ms_exact"] = pct(exact_ms, 50)
        out["search_p99_ms_exact"] = pct(exact_ms, 99)
        out["search_p50_ms"] = pct(ann_ms, 50)
        out["search_p99_ms"] = pct(ann_ms, 99)
        out["recall_at_1"], out["recall_at_5"] = recall(exact, ann)
        out["nprobe_sweep"] = nprobe_sweep(shards, queries, exact)
        shards.persist_dirty()
        begin = time.perf_counter()
        restarted = IndexSync.open(shards.model_id, shards.store.dim, Path(tmp), factory, config)
        restarted.sync(use_files=True)
        out["startup_files_s"] = time.perf_counter() - begin
        assert restarted.rebuilds == 0 and restarted.size == shards.size
        del restarted
        rebuilds = shards.rebuilds
        out["catchup_ms"] = catchup(
            url, shards, real.queries[0], Path(tmp) / "blobs", args.shard_capacity
        )
        out["catchup_rebuilds"] = shards.rebuilds - rebuilds  # shards re-read from SQL
        engine.dispose()
    if args.register:
        out.update(registration(args.register))
    if not args.skip_formats:
        out["formats"] = format_costs(real)
    print_table(out)
    if args.json:
        print(json.dumps(out))
    return 0


def print_table(out: dict) -> None:
    mb = 2**20
    print(f"\n| what | {out['refs']:,} reference vectors |")
    print("| --- | --- |")
    print(
        f"| search p50 / p99, exact | {out['search_p50_ms_exact']:.1f} / "
        f"{out['search_p99_ms_exact']:.1f} ms |"
    )
    print(f"| search p50 / p99, ANN | {out['search_p50_ms']:.2f} / {out['search_p99_ms']:.2f} ms |")
    print(f"| recall@1 / @5 against exact | {out['recall_at_1']:.3f} / {out['recall_at_5']:.3f} |")
    print(
        f"| index memory per replica, exact / ANN | {out['bytes_exact'] / mb:,.0f} / "
        f"{out['bytes_per_replica'] / mb:,.0f} MB |"
    )
    print(f"| start-up from SQL (PostgreSQL), ready (exact) | {out['startup_sql_s']:.1f} s |")
    print(f"| ANN training in the background after that | {out['ann_train_s']:.1f} s |")
    print(f"| start-up from shard files | {out['startup_files_s']:.1f} s |")
    print(
        f"| catch-up after one remote write | {out['catchup_ms']:,.0f} ms "
        f"({out['catchup_rebuilds']} shard(s) re-read) |"
    )
    if "http_images_per_s" in out:
        print(
            f"| registration: HTTP / encoder alone | {out['http_images_per_s']:.1f} / "
            f"{out['encoder_images_per_s']:.1f} images/s |"
        )
    print("\n| INDEX_NPROBE | search p50 | recall@1 / @5 |")
    print("| --- | --- | --- |")
    for row in out["nprobe_sweep"]:
        print(
            f"| {row['nprobe']} | {row['p50_ms']:.2f} ms | {row['recall_at_1']:.3f} / "
            f"{row['recall_at_5']:.3f} |"
        )
    if "formats" in out:
        print(
            "\n| vector format | bytes / vector | Grocery top-1 / top-5 | GroZi-dev top-1 / top-5 |"
        )
        print("| --- | --- | --- | --- |")
        for row in out["formats"]:
            g, z = row["grocery"], row["grozi"]
            print(
                f"| {row['format']} | {row['bytes_per_vector']} | {g[0]:.1%} / {g[1]:.1%} "
                f"| {z[0]:.1%} / {z[1]:.1%} |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
