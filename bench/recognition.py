"""Catalogue-to-shelf recognition, in-domain and out-of-domain, for models x serving pipelines.

    python -m bench.recognition --model efficientnet-lite0 --model retailklip-lite0-grocery
    python -m bench.recognition --model retailklip-lite0-shelf --runtime torch --runtime onnx \
        --runtime onnx-int8 --views jpeg25,dark

`--runtime` (repeatable, default torch) runs the same photos through the service's inference
runtimes (app/encoder/loading.py); an ONNX runtime serves the model's own pipeline only (its
pooling is baked into the graph), and with several runtimes the table is followed by the cosine
of every embedding to the PyTorch one.

For each model and pipeline (resize crop|pad, pooling avg|gem, mirror view, degraded reference
views) it prints top-1 / top-5 on
- Grocery Store (the data the shipped models were finetuned on): iconic catalogue images as
  references, all 2,485 in-store test photos as queries;
- GroZi-120 dev half (products and a store no model was trained on): web catalogue shots as
  references, shelf-video crops as queries, at most 5 and at most 20 per product (seed 0).
Embeddings go through the service's own code (decode, `Encoder`, `degraded_views`), and are cached
per (model, pipeline, data set) under --cache, so a second run only prints. Each reference is
embedded once with every degraded view; the view subsets are then scored by masking rows, so
choosing the fewest views that hold the gain costs no extra forward pass.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.encoder.loading import load_service_encoder
from app.encoder.torch_encoder import Encoder, override_pipeline
from app.encoder.views import VIEWS, parse_views
from app.settings import Settings
from training.data import Sample, load_image, read_grocery, read_grozi
from training.evaluate import embed_references, embed_samples, knn_metrics

ROOT = Path(__file__).resolve().parent.parent

ALL_VIEWS = tuple(VIEWS)
# resize, pool, flip: the query-side pipelines measured by default.
DEFAULT_PIPELINES = ("crop,avg,0", "pad,avg,0", "pad,gem,0", "pad,gem,1")


@dataclass(frozen=True)
class Split:
    name: str
    gallery: list[Sample]
    queries: list[Sample]
    subsets: dict[str, np.ndarray | None]  # report name -> mask over queries (None: all)


def load_splits(grocery: Path, grozi: Path, stride: int = 1) -> list[Split]:
    """`stride` > 1: every stride-th query only (a quicker, still paired, comparison)."""
    shelf20 = read_grozi(grozi, "shelf", per_class=20, seed=0)[::stride]
    shelf5 = {s.path for s in read_grozi(grozi, "shelf", per_class=5, seed=0)}
    return [
        Split(
            "grocery",
            read_grocery(grocery, "iconic"),
            read_grocery(grocery, "test")[::stride],
            {"grocery": None},
        ),
        Split(
            "grozi",
            read_grozi(grozi, "catalogue"),
            shelf20,
            {"grozi<=5": np.array([s.path in shelf5 for s in shelf20]), "grozi<=20": None},
        ),
    ]


class ImageCache:
    """Decoded images kept in memory across pipelines (decoding dominates small models)."""

    def __init__(self) -> None:
        self.images: dict[Path, object] = {}

    def __call__(self, path: Path):
        if path not in self.images:
            self.images[path] = load_image(path)
        return self.images[path]


def embeddings(
    encoder: Encoder, split: Split, cache_dir: Path, load: ImageCache, batch: int
) -> tuple[np.ndarray, list[str], np.ndarray]:
    pre = encoder.preprocess
    # Caches written with every view embedded keep their old names.
    views = "" if pre.reference_views == ALL_VIEWS else "-views_" + "+".join(pre.reference_views)
    key = re.sub(
        r"[^A-Za-z0-9._-]+",
        "_",
        f"{encoder.model_id}-{encoder.runtime}-{pre.image_size}-{pre.resize_mode}-"
        f"{pool_of(encoder)}-"
        f"{int(pre.flip)}-{split.name}-{len(split.gallery)}-{len(split.queries)}{views}",
    )
    path = cache_dir / f"{key}.npz"
    if path.is_file():
        data = np.load(path)
        return data["gallery"], list(data["labels"]), data["queries"]
    gallery, labels = embed_references(encoder, split.gallery, batch, f"{split.name} refs", load)
    queries = embed_samples(encoder, split.queries, batch, f"{split.name} queries", load)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, gallery=gallery, labels=np.array(labels), queries=queries)
    return gallery, labels, queries


def pool_of(encoder: Encoder) -> str:
    if getattr(encoder, "graph", None) is not None:  # exported with the model's own pooling
        return "own"
    pool = getattr(getattr(encoder.module, "trunk", None), "global_pool", None)
    return "gem" if type(pool).__name__ == "GeM" else "avg"


def score(
    gallery: np.ndarray,
    labels: list[str],
    queries: np.ndarray,
    query_labels: list[str],
    views: tuple[str, ...],
    embedded: tuple[str, ...] = ALL_VIEWS,
) -> tuple[float, float]:
    """Top-1/top-5 using only the image rows plus the rows of `views` (out of `embedded`)."""
    per_image = 1 + len(embedded)
    keep_codes = [0] + [1 + embedded.index(v) for v in views]
    mask = np.isin(np.arange(len(labels)) % per_image, keep_codes)
    metrics = knn_metrics(gallery[mask], list(np.asarray(labels)[mask]), queries, query_labels)
    return metrics.top1, metrics.top5


def view_cost(references: int, dim: int = 1280, queries: int = 100) -> None:
    """What degraded views add: index memory and exact-search time per query, against no views,
    measured in the same run (timing only, so random unit vectors are fine here)."""
    import time

    import faiss

    rng = np.random.default_rng(0)
    q = rng.standard_normal((queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    print(
        f"\n| views per reference | vectors ({references} references) | index MB | "
        "search ms / query | vs no views |"
    )
    print("| --- | --- | --- | --- | --- |")
    base = None
    for views in (0, 1, 2, 3, 5):
        n = references * (1 + views)
        x = rng.standard_normal((n, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        index.add_with_ids(x, np.arange(n, dtype=np.int64))
        index.search(q[:5], 64)  # warm-up
        begin = time.perf_counter()
        for row in q:
            index.search(row[None], 64 * (1 + views))
        ms = 1000 * (time.perf_counter() - begin) / queries
        base = base or ms
        print(f"| {views} | {n} | {n * dim * 4 / 2**20:.0f} | {ms:.2f} | {ms / base:.2f}x |")
        del index, x


def own_pool(model: str) -> str:
    """The pooling a model serves with (its checkpoint's), read without building a tower."""
    from app.encoder.checkpoint import read_metadata
    from app.encoder.model_spec import BUILTIN_CHECKPOINTS

    path = BUILTIN_CHECKPOINTS.get(model) or Path(model)
    return read_metadata(path)[0].pool if path.is_file() else "avg"


def print_agreement(by_runtime: dict[tuple[str, str], dict]) -> None:
    """Cosine of each runtime's embeddings to PyTorch's, over every row (gallery + queries)."""
    pairs = [(k, v) for k, v in by_runtime.items() if k[1] != "torch"]
    if not pairs:
        return
    print("\n| model | runtime | rows | min cosine to torch | p0.1 | mean |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (model, runtime), results in pairs:
        torch_results = by_runtime.get((model, "torch"))
        if torch_results is None:
            continue
        cosines = []
        for name, (gallery, _, queries) in results.items():
            ref_gallery, _, ref_queries = torch_results[name]
            cosines.append((gallery * ref_gallery).sum(axis=1))
            cosines.append((queries * ref_queries).sum(axis=1))
        cos = np.concatenate(cosines)
        print(
            f"| {model} | {runtime} | {len(cos)} | {cos.min():.5f} | "
            f"{np.quantile(cos, 0.001):.5f} | {cos.mean():.6f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, help="repeatable")
    parser.add_argument("--pipeline", action="append", help="resize,pool,flip e.g. pad,gem,0")
    parser.add_argument(
        "--views",
        action="append",
        help="reference-view sets to score (comma-separated names, or none); default: none, all",
    )
    parser.add_argument("--view-subsets", action="store_true", help="score every subset of views")
    parser.add_argument("--grocery", type=Path, default=ROOT.parent / "shared/data/grocery-store")
    parser.add_argument("--grozi", type=Path, default=ROOT.parent / "shared/data/grozi120-dev")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs/bench/recognition_cache")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--runtime",
        action="append",
        choices=("auto", "torch", "onnx", "onnx-int8"),
        help="repeatable; default torch. ONNX runtimes use the model's own pipeline",
    )
    parser.add_argument(
        "--query-stride", type=int, default=1, help="every N-th query only (quick comparisons)"
    )
    parser.add_argument("--onnx-cache", type=Path, default=ROOT / "runs/bench/onnx_data")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--view-cost", type=int, metavar="N", help="only time search with views over N references"
    )
    args = parser.parse_args(argv)
    if args.view_cost:
        view_cost(args.view_cost)
        return 0

    splits = load_splits(args.grocery, args.grozi, args.query_stride)
    view_sets = [parse_views(v) for v in (args.views or ["none", ",".join(ALL_VIEWS)])]
    if args.view_subsets:
        view_sets = [
            c for r in range(len(ALL_VIEWS) + 1) for c in itertools.combinations(ALL_VIEWS, r)
        ]
    # Embed only the views some scored set uses (all of them when subsets are scored).
    embedded = tuple(v for v in ALL_VIEWS if any(v in vs for vs in view_sets))
    load = ImageCache()
    rows = []
    runtimes = args.runtime or ["torch"]
    print(
        "| model | runtime | resize | pool | flip | reference views | Grocery top-1 / top-5 "
        "| GroZi-dev <=5 top-1 / top-5 | GroZi-dev <=20 top-1 / top-5 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    by_runtime: dict[tuple[str, str], dict] = {}
    for model, runtime in itertools.product(args.model, runtimes):
        settings = Settings(model=model, device="cpu", runtime=runtime, data_dir=args.onnx_cache)
        base = load_service_encoder(settings.model_choice)
        own = base.preprocess
        own_spec = f"{own.resize_mode},{own_pool(model)},{int(own.flip)}"
        specs = args.pipeline or (DEFAULT_PIPELINES if runtime == "torch" else [own_spec])
        for spec in specs:
            resize, pool, flip = spec.split(",")
            if runtime != "torch" and spec != own_spec:
                raise SystemExit(
                    f"{runtime} serves the model's own pipeline {own_spec}, not {spec}"
                )
            encoder = override_pipeline(
                base,
                resize_mode=resize,
                pool=pool if runtime == "torch" else None,
                flip=flip == "1",
                reference_views=embedded,
            )
            results = {}
            for split in splits:
                results[split.name] = embeddings(encoder, split, args.cache, load, args.batch_size)
            by_runtime[(model, runtime)] = results
            for views in view_sets:
                row = {"model": model, "runtime": runtime, "resize": resize, "pool": pool}
                row["flip"] = flip == "1"
                row["views"] = list(views)
                for split in splits:
                    gallery, labels, queries = results[split.name]
                    query_labels = [s.label for s in split.queries]
                    for name, mask in split.subsets.items():
                        q = queries if mask is None else queries[mask]
                        ql = query_labels if mask is None else list(np.asarray(query_labels)[mask])
                        row[name] = score(gallery, labels, q, ql, views, embedded)
                rows.append(row)
                cells = " | ".join(
                    f"{row[n][0]:.1%} / {row[n][1]:.1%}"
                    for n in ("grocery", "grozi<=5", "grozi<=20")
                )
                print(
                    f"| {model} | {runtime} | {resize} | {pool} | {'yes' if row['flip'] else 'no'} "
                    f"| {','.join(views) or 'none'} | {cells} |",
                    flush=True,
                )
    print_agreement(by_runtime)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
