"""Catalogue-filtered search against unfiltered search, measured in the same run.

Two parts:
- index: `ShardStore.search` over N synthetic 1280-d vectors (the shipped encoder's width, in
  shards of SHARD_CAPACITY as served) unfiltered and with `allowed` keeping 50%, 10% and 1% of
  the images (the FAISS IDSelectorBitmap path the service takes), k = 64 as /classify asks;
- SQL: the allowed-id array of a catalogue and of a metadata filter, computed cold, served
  from the ScopeResolver cache (one stamp query), and on the first request after a write (a new
  product of the scope with one image, committed with its change-log entry as the service
  writes it: the cache is brought up to date from the log), on SQLite and PostgreSQL with N_SQL
  references: once the write is applied (the shards' change listener woke the resolver's
  refresher, which brought the scope up to date) and when the request comes first (it brings the
  scope up to date from the log itself). Before the cache followed the log, the first request
  after any write paid the cold cost.

    nice -n 10 .venv/bin/python -m bench.filtered_search [--sizes 100000 1000000] [--sql 100000]

Prints markdown tables (times are medians of --repeat single-photo searches; ratios are against
the unfiltered search of the same size in the same run) and writes them to
bench/results/filtered_search.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from tqdm import tqdm

from app.catalogue.memberships import add_memberships, bump_catalogue_epoch
from app.catalogue.scope_queries import ScopeQueries
from app.db.changelog import append
from app.db.migrate import open_database
from app.db.session import make_session_factory
from app.db.tables import Embedding, Product, ProductCatalogue, ReferenceImage
from app.index.shard_store import ShardStore
from app.index.stored_vectors import as_stored
from app.index.vector_ids import vector_id
from app.recognition.scopes import Scope, ScopeResolver, parse_filter
from tests.support.databases import create_pg_database, drop_pg_database

REPO = Path(__file__).resolve().parents[1]

DIM = 1280
SHARD_CAPACITY = 100_000
PAUSE_S = 0.01


def timed_ms(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1000


def median_ms(run: Callable[[], object], repeat: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def index_rows(n: int, rng: np.random.Generator, repeat: int) -> list[str]:
    shards = ShardStore("bench", DIM)
    # Each shard's vectors arrive as one write with its own (increasing) log sequence number.
    for seq, start in enumerate(
        tqdm(range(0, n, SHARD_CAPACITY), desc=f"index {n}", unit="shard"), start=1
    ):
        ids = np.arange(start + 1, min(n, start + SHARD_CAPACITY) + 1, dtype=np.int64)
        vectors = rng.standard_normal((len(ids), DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        shard_nos = np.full(len(ids), start // SHARD_CAPACITY, np.int64)
        shards.add_local(shard_nos, seq, vector_id(ids), as_stored(vectors))
    query = rng.standard_normal((1, DIM), dtype=np.float32)
    query /= np.linalg.norm(query)
    k = 64  # what /classify asks for: max(top_k * 8, 64) per vector of an image
    base = median_ms(lambda: shards.search(query, k), repeat)
    rows = [f"| {n:,} | all (no filter) | {base:.1f} | 1.00x | yes |"]
    for share in (0.5, 0.1, 0.01):
        allowed = np.sort(rng.choice(np.arange(1, n + 1), int(n * share), replace=False))
        took = median_ms(lambda a=allowed: shards.search(query, k, a), repeat)
        _, got = shards.search(query, k, allowed)
        full = bool((got >= 0).all() and np.isin(got, allowed).all())
        rows.append(f"| {n:,} | {share:.0%} | {took:.1f} | {took / base:.2f}x | {full} |")
    return rows


def index_part(sizes: list[int], repeat: int) -> list[str]:
    rows = ["| vectors | filter keeps | search ms | vs unfiltered | k hits, all allowed |"]
    rows.append("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n in sizes:
        rows += index_rows(n, rng, repeat)
    return rows


def sql_part(url: str, label: str, n: int, repeat: int) -> list[str]:
    engine = open_database(url, True)
    factory = make_session_factory(engine)
    products, per = n // 100, 100
    with factory() as session:
        session.execute(
            insert(Product),
            [
                {"sku": f"p{i}", "name": f"P{i}", "metadata_": {"brand": f"b{i % 50}"}}
                for i in range(products)
            ],
        )
        session.commit()
        ids = dict(session.query(Product.sku, Product.id).all())
        for chunk in tqdm(range(0, products, 100), desc=f"sql {label}", unit="100 products"):
            image_ids = session.scalars(
                insert(ReferenceImage).returning(ReferenceImage.id),
                [
                    {
                        "product_id": ids[f"p{p}"],
                        "sha256": f"{p}-{j}",
                        "blob_key": "x",
                        "image_format": "JPEG",
                        "width": 1,
                        "height": 1,
                    }
                    for p in range(chunk, min(products, chunk + 100))
                    for j in range(per)
                ],
            ).all()
            # A scope holds the images with a vector of the model (app/recognition/scopes.py):
            # one each.
            session.execute(
                insert(Embedding),
                [
                    {"model_id": "bench", "image_id": i, "code": 0, "shard": 0, "vector": b"\0\0"}
                    for i in image_ids
                ],
            )
        # Catalogue "store-10": every tenth product (10% of the references).
        session.execute(
            insert(ProductCatalogue),
            [{"product_id": ids[f"p{p}"], "catalogue": "store-10"} for p in range(0, products, 10)],
        )
        bump_catalogue_epoch(session)
        session.commit()
    rows = []
    for name, scope in [
        ("catalogue 10%", Scope(catalogue="store-10")),
        ("filter 2%", Scope(filter=parse_filter('{"brand": "b7"}'))),
    ]:
        cold = median_ms(
            lambda s=scope: ScopeResolver(ScopeQueries(factory, "bench")).allowed(s), repeat
        )
        resolver = ScopeResolver(ScopeQueries(factory, "bench"))
        found = resolver.allowed(scope)
        count = 0 if found is None else len(found)
        cached, applied, unapplied = [], [], []
        for _ in range(repeat):
            # Each sample after a pause, as requests arrive: the same for all three.
            time.sleep(PAUSE_S)
            cached.append(timed_ms(lambda s=scope, r=resolver: r.allowed(s)))
            # The shards applied the write (a local one, or heard through the log) before the
            # request: the refresher has brought the scope up to date.
            head = write_one_product(factory)
            resolver.changed(None)
            while (resolver.cached_head(scope) or 0) < head:
                time.sleep(0.001)
            time.sleep(PAUSE_S)
            applied.append(timed_ms(lambda s=scope, r=resolver: r.allowed(s)))
            # The request came first: it brings the scope up to date from the log itself.
            write_one_product(factory)
            time.sleep(PAUSE_S)
            unapplied.append(timed_ms(lambda s=scope, r=resolver: r.allowed(s)))
        warm = statistics.median(cached)
        first, racing = statistics.median(applied), statistics.median(unapplied)
        resolver.close()
        rows.append(
            f"| {label} | {n:,} | {name} ({count:,} ids) | {cold:.1f} | {warm:.2f} "
            f"| {first:.2f} ({first / warm:.2f}x) | {racing:.2f} ({racing / warm:.2f}x) |"
        )
    engine.dispose()
    return rows


def write_one_product(factory: Callable[[], Session]) -> int:
    """What `ProductStore.create_product` commits for a product of both scopes, one image;
    returns the log head after it."""
    with factory() as session:
        count = session.scalar(select(func.count()).select_from(Product)) or 0
        product = Product(sku=f"new{count}", name="New", metadata_={"brand": "b7"})
        session.add(product)
        session.flush()
        add_memberships(session, product.id, ["store-10"], bump=False)
        image = ReferenceImage(
            product_id=product.id,
            sha256=f"new{count}",
            blob_key="x",
            image_format="JPEG",
            width=1,
            height=1,
        )
        session.add(image)
        session.flush()
        session.add(Embedding(model_id="bench", image_id=image.id, code=0, shard=0, vector=b"\0\0"))
        session.flush()
        head = append(session, "bench", "add", vector_id(np.array([image.id])))
        session.commit()
    return head


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--sql", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    lines = []
    if args.sizes:
        lines += ["### Index: one photo's search, filtered inside FAISS", ""]
        lines += [*index_part(args.sizes, args.repeat), ""]
    lines += ["### SQL: the allowed ids of a scope", ""]
    lines += [
        "| database | references | scope | cold ms | cached ms (stamp query) "
        "| first after a write, applied ms (vs cached) "
        "| first after a write, before it is applied ms (vs cached) |"
    ]
    lines += ["|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        lines += sql_part(f"sqlite:///{tmp}/bench.sqlite", "SQLite", args.sql, args.repeat)
    url = create_pg_database(prefix="retailklip_bench")
    try:
        lines += sql_part(url, "PostgreSQL", args.sql, args.repeat)
    finally:
        drop_pg_database(url)
    text = "\n".join(lines) + "\n"
    print(text)
    (REPO / "bench/results/filtered_search.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
