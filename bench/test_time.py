"""Two encoder levers that need no training, measured like every model: test-time crops on the
query, and references embedded at a second scale.

    .venv/bin/python -m bench.test_time [--model retailklip-lite0-shelf] [--query-stride 1]

- **Query crops** (`crops`): the query's embedding is the normalised mean of the photo's and of
  its centre crops (keeping 80%, and 80% + 60%, of each side): one forward pass per crop, so
  2x / 3x the encoder's CPU per photo.
- **References at a second scale** (`refs`): each reference is also embedded after a downscale to
  50% (or 35%) of its side and back, as the low-resolution shelf crop it will be compared with;
  the extra row joins the gallery like a degraded view (more index memory, no query cost).

Each lever is scored on Grocery Store test (the shipped models were finetuned on it) and on
GroZi-dev <= 5 and <= 20 (never trained on), beside the model as served, with the same photos
and the service's own decode and preprocessing (bench.recognition's splits); ms per photo is the
encoder's time per query photo in the same run (batch 1, medians of 30), as a ratio to the
served model. Nothing is fitted to GroZi-dev.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from app.encoder.torch_encoder import Encoder, load_encoder
from bench.recognition import ImageCache, load_splits, score
from tests.support.paths import GROCERY, GROZI
from training.data import Sample
from training.evaluate import embed_references, embed_samples

Variants = Callable[[Image.Image], list[Image.Image]]


def centre(image: Image.Image, keep: float) -> Image.Image:
    w, h = image.size
    cw, ch = max(1, round(w * keep)), max(1, round(h * keep))
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch))


def rescaled(image: Image.Image, scale: float) -> Image.Image:
    w, h = image.size
    small = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    return small.resize((w, h), Image.BILINEAR)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def embed_variants(
    encoder: Encoder, samples: Sequence[Sample], variants: Variants, load: ImageCache, desc: str
) -> np.ndarray:
    """One row per sample: the normalised mean of its variants' embeddings."""
    rows = []
    for start in tqdm(range(0, len(samples), 16), desc=desc, leave=False):
        images = [variants(load(s.path)) for s in samples[start : start + 16]]
        flat = encoder.embed([v for group in images for v in group])
        per = len(images[0])
        rows.append(unit(flat.reshape(len(images), per, -1).mean(axis=1)))
    return np.concatenate(rows)


def ms_per_photo(encoder: Encoder, image: Image.Image, variants: Variants) -> float:
    encoder.embed(variants(image))
    times = []
    for _ in range(30):
        start = time.perf_counter()
        encoder.embed(variants(image))
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="retailklip-lite0-shelf")
    parser.add_argument("--query-stride", type=int, default=1)
    parser.add_argument("--grozi", type=Path, default=GROZI)
    args = parser.parse_args(argv)
    encoder = load_encoder(args.model, "cpu")
    views = encoder.preprocess.reference_views
    load = ImageCache()
    splits = load_splits(GROCERY, args.grozi, args.query_stride)
    query_levers: dict[str, Variants] = {
        "served": lambda im: [im],
        "crops 80%": lambda im: [im, centre(im, 0.8)],
        "crops 80%+60%": lambda im: [im, centre(im, 0.8), centre(im, 0.6)],
    }
    ref_scales = {"refs +50%": 0.5, "refs +35%": 0.35}
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for split in splits:
        gallery, labels = embed_references(encoder, split.gallery, 32, f"{split.name} refs", load)
        query_labels = [s.label for s in split.queries]
        queries: dict[str, np.ndarray] = {}
        for name, variants in query_levers.items():
            if name == "served":
                queries[name] = embed_samples(encoder, split.queries, 32, f"{split.name} q", load)
            else:
                queries[name] = embed_variants(
                    encoder, split.queries, variants, load, f"{split.name} {name}"
                )
        for name, rows in queries.items():
            results.setdefault(name, {})
            for subset, mask in split.subsets.items():
                q = rows if mask is None else rows[mask]
                ql = query_labels if mask is None else list(np.asarray(query_labels)[mask])
                results[name][subset] = score(gallery, labels, q, ql, views, views)
        for name, scale in ref_scales.items():
            extra = embed_samples(
                encoder,
                split.gallery,
                32,
                f"{split.name} {name}",
                lambda p, s=scale: rescaled(load(p), s),
            )
            both = np.concatenate([gallery, extra])
            both_labels = labels + [s.label for s in split.gallery]
            results.setdefault(name, {})
            for subset, mask in split.subsets.items():
                q = queries["served"] if mask is None else queries["served"][mask]
                ql = query_labels if mask is None else list(np.asarray(query_labels)[mask])
                m = _plain_metrics(both, both_labels, q, ql)
                results[name][subset] = m
    photo = load(splits[1].queries[0].path)
    base_ms = ms_per_photo(encoder, photo, query_levers["served"])
    cost = {name: ms_per_photo(encoder, photo, v) for name, v in query_levers.items()}
    cost.update({name: base_ms for name in ref_scales})
    cost["served"] = base_ms
    subsets = ["grocery", "grozi<=5", "grozi<=20"]
    print(f"\n{args.model} ({encoder.model_id}), query stride {args.query_stride}\n")
    print("| lever | " + " | ".join(f"{s} top-1 / top-5" for s in subsets) + " | ms per photo |")
    print("|---" * (len(subsets) + 2) + "|")
    base = results["served"]
    for name, by_subset in results.items():
        cells = []
        for s in subsets:
            top1, top5 = by_subset[s]
            delta = "" if name == "served" else f" ({100 * (top1 - base[s][0]):+.1f})"
            cells.append(f"{100 * top1:.1f}{delta} / {100 * top5:.1f}")
        ratio = cost[name] / base_ms
        print(f"| {name} | " + " | ".join(cells) + f" | {cost[name]:.1f} ({ratio:.2f}x) |")
    return 0


def _plain_metrics(
    gallery: np.ndarray, labels: list[str], queries: np.ndarray, query_labels: list[str]
) -> tuple[float, float]:
    from training.evaluate import knn_metrics

    metrics = knn_metrics(gallery, labels, queries, query_labels)
    return metrics.top1, metrics.top5


if __name__ == "__main__":
    raise SystemExit(main())
