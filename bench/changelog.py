"""Change-log sync and float16 vectors in SQL, measured.

    python -m bench.changelog sync --refs 100000          # PostgreSQL, vs 7df9e60
    python -m bench.changelog accuracy --model retailklip-lite0-shelf --per-class 5

`sync` seeds a fresh PostgreSQL database with N reference vectors (1,280-d synthetic unit
vectors: timing only) through each code base's own schema, then measures, through the public
ShardSet/Catalogue API: start-up from SQL, start-up from the shard files, and the catch-up of a
replica after one write made by another process into a shard holding ~N vectors. The "before"
column runs the same steps on `git archive <base>` (default 7df9e60, the last release with
per-shard versions instead of the log) in a subprocess, in the same run, so the ratio is what
the change made on this noisy machine. Each side runs as `python -m bench.changelog sync-one`
in a subprocess whose working directory is the code base measured (its `app` first on the
path; bench/ and tests/ from this checkout, through PYTHONPATH).

`accuracy` embeds both shared data sets with a shipped model through the service's pipeline
(the readers and embedding helpers bench/recognition.py uses) and scores top-1/top-5 with the
reference vectors as float32 and as stored now (float16, renormalised), plus how many queries'
nearest reference changed and the largest score change.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.databases import create_pg_database, drop_pg_database

ROOT = Path(__file__).resolve().parent.parent
DIM = 1280
MODEL = "bench-model"
CAPACITY = 100_000


# ---- sync: runs inside whichever code base `app` is imported from -------------------------
def _seed(url: str, refs: int, capacity: int = CAPACITY) -> int:
    """Write `refs` vectors straight into SQL in the schema of the code base in use."""
    from sqlalchemy import inspect, text
    from tqdm import tqdm

    from app.db.session import make_engine

    engine = make_engine(url)
    new_layout = inspect(engine).has_table("embeddings")
    rng = np.random.default_rng(0)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO products (id, sku, name, metadata, created_at, updated_at) "
                "VALUES (1, 'seed', 'Seed', '{}', now(), now())"
            )
        )
    step = 5000
    for start in tqdm(range(0, refs, step), desc="seeding", unit_scale=step, leave=False):
        n = min(step, refs - start)
        x = rng.standard_normal((n, DIM)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        ids = range(start + 1, start + n + 1)
        images = [
            {"i": i, "h": f"{i:064d}", "e": x[k].tobytes(), "s": (i - 1) // capacity}
            for k, i in enumerate(ids)
        ]
        with engine.begin() as conn:
            if new_layout:
                conn.execute(
                    text(
                        "INSERT INTO reference_images (id, product_id, sha256, blob_key, "
                        "image_format, width, height, created_at) "
                        "VALUES (:i, 1, :h, :h, 'JPEG', 1, 1, now())"
                    ),
                    images,
                )
                conn.execute(
                    text(
                        "INSERT INTO embeddings (model_id, image_id, code, shard, vector, views) "
                        "VALUES (:m, :i, 0, :s, :v, '')"
                    ),
                    [
                        {"m": MODEL, "i": r["i"], "s": r["s"], "v": x[k].astype("<f2").tobytes()}
                        for k, r in enumerate(images)
                    ],
                )
            else:
                conn.execute(
                    text(
                        "INSERT INTO reference_images (id, product_id, sha256, blob_key, "
                        "image_format, width, height, embedding, model_id, shard, views, "
                        "created_at) VALUES (:i, 1, :h, :h, 'JPEG', 1, 1, :e, :m, :s, '', now())"
                    ),
                    [{**r, "m": MODEL} for r in images],
                )
    with engine.begin() as conn:
        conn.execute(
            text("SELECT setval(pg_get_serial_sequence('reference_images', 'id'), :n)"),
            {"n": refs},
        )
        if new_layout:
            conn.execute(text(f"INSERT INTO log_heads VALUES ('{MODEL}', 0, 0)"))
        else:
            shards = (refs - 1) // capacity + 1
            for shard in range(shards):
                conn.execute(text(f"INSERT INTO shard_versions VALUES ('{MODEL}', {shard}, 1)"))
        table = "embeddings" if new_layout else "reference_images"
        size = conn.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar_one()
    engine.dispose()
    return int(size)


def _replica_api() -> tuple[Any, Any, Any]:
    """(open an index, make a writer, search) in whichever code base is measured: the split
    index (IndexSync, ProductStore) or the earlier ShardSet and Catalogue."""
    try:
        from app.catalogue.products import ProductStore
        from app.runtime.index_sync import IndexSync
    except ImportError:  # the code before the split
        from app.index.shards import ShardSet

        from app.catalogue import Catalogue

        def old_writer(factory: Any, blobs: Any, capacity: int, work: Path) -> Any:
            return Catalogue(factory, blobs, ShardSet(MODEL, DIM, work, factory), capacity)

        return ShardSet, old_writer, lambda index, q, k: index.search(q, k)

    def new_writer(factory: Any, blobs: Any, capacity: int, work: Path) -> Any:
        index = IndexSync.open(MODEL, DIM, work, factory)
        return ProductStore(factory, blobs, MODEL, capacity, committed=index.follower)

    return IndexSync.open, new_writer, lambda index, q, k: index.store.search(q, k)


def run_sync(url: str, refs: int, writes: int, work: Path) -> dict[str, object]:
    from app.catalogue.products import NewImage
    from app.db.migrate import upgrade_to_head
    from app.db.session import make_engine, make_session_factory
    from app.storage.blobs import FileBlobStore, sha256_hex

    open_index, make_writer, search = _replica_api()
    upgrade_to_head(url)
    # One shard holds the seeded vectors and the writes: "one write into a shard of N".
    capacity = max(CAPACITY, refs + writes)
    sql_bytes = _seed(url, refs, capacity)
    replica_engine, writer_engine = make_engine(url), make_engine(url)
    replica_factory = make_session_factory(replica_engine)
    writer_factory = make_session_factory(writer_engine)

    replica = open_index(MODEL, DIM, work / "replica", replica_factory)
    begin = time.perf_counter()
    replica.sync(use_files=True)
    startup_sql = time.perf_counter() - begin
    replica.persist_dirty()
    again = open_index(MODEL, DIM, work / "replica", replica_factory)
    begin = time.perf_counter()
    again.sync(use_files=True)
    startup_files = time.perf_counter() - begin
    del again

    writer = make_writer(writer_factory, FileBlobStore(work / "blobs"), capacity, work / "writer")
    rng = np.random.default_rng(1)
    catchups, rebuilds_before = [], replica.rebuilds
    for i in range(writes):
        v = rng.standard_normal(DIM).astype(np.float32)
        v /= np.linalg.norm(v)
        data = f"write-{i}".encode()
        writer.add_images("seed", [NewImage(data, sha256_hex(data), "JPEG", 1, 1, v)])
        begin = time.perf_counter()
        replica.sync()
        catchups.append(1000 * (time.perf_counter() - begin))
        _, hits = search(replica, v[None], 1)
        assert hits[0, 0] == refs + i + 1, "the remote write is not searchable after sync"
    replica_engine.dispose()
    writer_engine.dispose()
    return {
        "refs": refs,
        "vectors_in_shard": refs + writes,
        "sql_bytes_per_vector": sql_bytes / refs,
        "startup_sql_s": startup_sql,
        "startup_files_s": startup_files,
        "catchup_ms_first": catchups[0],
        "catchup_ms": statistics.median(catchups[1:] or catchups),
        "catchup_rebuilds": replica.rebuilds - rebuilds_before,
    }


def one_variant(code: Path, refs: int, writes: int) -> dict[str, object]:
    """Run `run_sync` in a subprocess importing `app` from `code` (this tree or an archive):
    `code` is its working directory, so its `app` comes first; bench/ and tests/ come from this
    checkout (PYTHONPATH), which an archive of app/ does not have."""
    url = create_pg_database(prefix="retailklip_bench")
    try:
        with tempfile.TemporaryDirectory(prefix="changelog-bench-") as work:
            command = ["-m", "bench.changelog", "sync-one", url, str(refs), str(writes), work]
            out = subprocess.run(
                [sys.executable, *command],
                cwd=code,
                env={**os.environ, "PYTHONPATH": os.pathsep.join((str(code), str(ROOT)))},
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise RuntimeError(out.stderr[-3000:])
            line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
            return json.loads(line[len("RESULT ") :])
    finally:
        drop_pg_database(url)


def sync_one_command(args: argparse.Namespace) -> int:
    print("RESULT", json.dumps(run_sync(args.url, args.refs, args.writes, args.work)))
    return 0


def sync_command(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="changelog-base-") as base:
        archive = subprocess.run(
            ["git", "archive", args.base, "app", "migrations", "alembic.ini"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(base, filter="data")
        before = one_variant(Path(base), args.refs, args.writes)
    after = one_variant(ROOT, args.refs, args.writes)
    rows = [
        ("start-up from SQL (s)", "startup_sql_s", "{:.2f}"),
        ("start-up from shard files (s)", "startup_files_s", "{:.2f}"),
        ("catch-up after one remote write, median (ms)", "catchup_ms", "{:.1f}"),
        ("catch-up, first write after start (ms)", "catchup_ms_first", "{:.1f}"),
        ("full rebuilds during catch-ups", "catchup_rebuilds", "{}"),
        ("SQL bytes per vector (table + index + TOAST)", "sql_bytes_per_vector", "{:.0f}"),
    ]
    print(f"\n{args.refs} references, 1,280-d, PostgreSQL; {args.writes} single-image writes")
    print(f"| what | before ({args.base}) | after (this tree) | after / before |")
    print("| --- | --- | --- | --- |")
    for label, key, fmt in rows:
        b, a = before[key], after[key]
        ratio = f"{a / b:.3f}x" if isinstance(b, int | float) and b else "-"
        print(f"| {label} | {fmt.format(b)} | {fmt.format(a)} | {ratio} |")
    print(json.dumps({"before": before, "after": after}))
    return 0


# ---- accuracy: float32 vs float16 reference vectors ---------------------------------------
def accuracy_command(args: argparse.Namespace) -> int:
    """Same embeddings, references scored as float32 and as stored (float16, renormalised).

    Queries are a per-class subset (--per-class) so that this fits on a busy CPU; the point is
    the difference between the two rows, which uses identical embeddings."""
    from app.encoder.torch_encoder import load_encoder
    from app.index.stored_vectors import as_stored
    from training.data import read_grocery, read_grozi
    from training.evaluate import embed_references, embed_samples, knn_metrics

    def per_class(samples: list, n: int) -> list:
        seen: dict[str, int] = {}
        out = []
        for sample in samples:
            if seen.get(sample.label, 0) < n:
                seen[sample.label] = seen.get(sample.label, 0) + 1
                out.append(sample)
        return out

    splits = {
        "grocery": (
            read_grocery(args.grocery, "iconic"),
            per_class(read_grocery(args.grocery, "test"), args.per_class),
        ),
        "grozi": (
            read_grozi(args.grozi, "catalogue"),
            read_grozi(args.grozi, "shelf", per_class=args.per_class, seed=0),
        ),
    }
    print(
        "| model | data set | queries | reference vectors | top-1 | top-5 | top-1 answers changed "
        "| max score change |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    results = []
    for model in args.model:
        encoder = load_encoder(model, "cpu")  # the service's pipeline and reference views
        for name, (gallery_samples, query_samples) in splits.items():
            gallery, labels = embed_references(encoder, gallery_samples, args.batch, name)
            queries = embed_samples(encoder, query_samples, args.batch, f"{name} queries")
            query_labels = [s.label for s in query_samples]
            half = as_stored(gallery)
            full_scores, half_scores = queries @ gallery.T, queries @ half.T
            changed = int((full_scores.argmax(1) != half_scores.argmax(1)).sum())
            drift = float(np.abs(full_scores - half_scores).max())
            for kind, vectors in (("float32", gallery), ("float16", half)):
                m = knn_metrics(vectors, labels, queries, query_labels)
                results.append(
                    {
                        "model": model,
                        "data": name,
                        "queries": len(queries),
                        "vectors": kind,
                        "top1": m.top1,
                        "top5": m.top5,
                        "nn_changed": changed,
                        "max_drift": drift,
                    }
                )
                tail = f"| {changed} | {drift:.1e} |" if kind == "float16" else "| - | - |"
                print(
                    f"| {model} | {name} | {len(queries)} | {kind} | {m.top1:.2%} "
                    f"| {m.top5:.2%} {tail}",
                    flush=True,
                )
    print(json.dumps(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("sync", help="start-up and catch-up, this tree vs a base revision")
    sync.add_argument("--refs", type=int, default=100_000)
    sync.add_argument("--writes", type=int, default=6)
    sync.add_argument(
        "--base",
        default="7df9e60",
        help="git revision measured as 'before' (default: the last one before the change log)",
    )
    sync.set_defaults(func=sync_command)
    # One side of `sync`, in the subprocess `one_variant` starts: prints "RESULT {json}".
    one = sub.add_parser("sync-one")
    one.add_argument("url")
    one.add_argument("refs", type=int)
    one.add_argument("writes", type=int)
    one.add_argument("work", type=Path)
    one.set_defaults(func=sync_one_command)
    acc = sub.add_parser("accuracy", help="top-1/top-5 with float32 vs float16 references")
    acc.add_argument("--model", action="append", default=None)
    acc.add_argument("--grocery", type=Path, default=ROOT.parent / "shared/data/grocery-store")
    acc.add_argument("--grozi", type=Path, default=ROOT.parent / "shared/data/grozi120-dev")
    acc.add_argument("--per-class", type=int, default=5, help="queries per product")
    acc.add_argument("--batch", type=int, default=32)
    acc.set_defaults(func=accuracy_command)
    args = parser.parse_args(argv)
    if args.command == "accuracy" and not args.model:
        args.model = ["retailklip-lite0-shelf", "retailklip-lite0-grocery"]
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
