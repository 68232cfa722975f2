"""Nearest-neighbour evaluation: a gallery of labelled references, a query set, top-k accuracy.

Classes are ranked by their best-matching gallery image (cosine), as the service ranks distinct
SKUs, so top-5 means "the true product is among the 5 best distinct products".
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from app.encoder.torch_encoder import Encoder
from app.encoder.views import degraded_views
from training.data import Sample, load_image


@dataclass
class ClassResult:
    name: str
    queries: int
    top1: float
    top5: float


@dataclass
class KnnMetrics:
    top1: float
    top5: float
    mean_per_class: float
    queries: int
    classes: int
    per_class: list[ClassResult] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        return {
            "top1": self.top1,
            "top5": self.top5,
            "mean_per_class": self.mean_per_class,
            "queries": self.queries,
            "classes": self.classes,
        }


def embed_samples(
    encoder: Encoder,
    samples: Sequence[Sample],
    batch_size: int = 64,
    desc: str = "embed",
    load: Callable[[Path], Image.Image] = load_image,
) -> np.ndarray:
    """Embed files exactly as the service would (decode, eval transform, L2-normalise)."""
    rows = []
    for start in tqdm(range(0, len(samples), batch_size), desc=desc, leave=False):
        images = [load(s.path) for s in samples[start : start + batch_size]]
        rows.append(encoder.embed(images))
    return np.concatenate(rows) if rows else np.zeros((0, encoder.embed_dim), np.float32)


def embed_references(
    encoder: Encoder,
    samples: Sequence[Sample],
    batch_size: int = 64,
    desc: str = "gallery",
    load: Callable[[Path], Image.Image] = load_image,
) -> tuple[np.ndarray, list[str]]:
    """Gallery rows as the service stores them: each image, then its degraded views (if the
    pipeline has any), all labelled with the image's class."""
    views = encoder.preprocess.reference_views
    rows, labels = [], []
    per_batch = max(1, batch_size // (1 + len(views)))
    for start in tqdm(range(0, len(samples), per_batch), desc=desc, leave=False):
        images = []
        for sample in samples[start : start + per_batch]:
            image = load(sample.path)
            images += [image, *degraded_views(image, views)]
            labels += [sample.label] * (1 + len(views))
        rows.append(encoder.embed(images))
    gallery = np.concatenate(rows) if rows else np.zeros((0, encoder.embed_dim), np.float32)
    return gallery, labels


def class_scores(
    gallery: np.ndarray, gallery_labels: Sequence[str], queries: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """(queries x classes) best cosine per class, and the class names in column order."""
    names = sorted(set(gallery_labels))
    labels = np.asarray(gallery_labels)
    sims = queries @ gallery.T
    scores = np.stack([sims[:, labels == n].max(axis=1) for n in names], axis=1)
    return scores, names


def knn_metrics(
    gallery: np.ndarray,
    gallery_labels: Sequence[str],
    queries: np.ndarray,
    query_labels: Sequence[str],
    k: int = 5,
) -> KnnMetrics:
    scores, names = class_scores(gallery, gallery_labels, queries)
    ranked = np.argsort(-scores, axis=1)[:, :k]
    index = {n: i for i, n in enumerate(names)}
    truth = np.array([index.get(label, -1) for label in query_labels])
    hit1 = ranked[:, 0] == truth
    hitk = (ranked == truth[:, None]).any(axis=1)
    per_class = []
    for name in sorted(set(query_labels)):
        mask = np.asarray(query_labels) == name
        per_class.append(
            ClassResult(name, int(mask.sum()), float(hit1[mask].mean()), float(hitk[mask].mean()))
        )
    return KnnMetrics(
        top1=float(hit1.mean()),
        top5=float(hitk.mean()),
        mean_per_class=float(np.mean([c.top1 for c in per_class])),
        queries=len(query_labels),
        classes=len(per_class),
        per_class=per_class,
    )


def leave_one_out_top1(embeddings: np.ndarray, labels: Sequence[int]) -> float:
    """1-NN accuracy of each image against all the others (a cheap validation signal)."""
    sims = embeddings @ embeddings.T
    np.fill_diagonal(sims, -np.inf)
    labels_arr = np.asarray(labels)
    return float((labels_arr[sims.argmax(axis=1)] == labels_arr).mean())


def write_per_class_csv(path: str | Path, metrics: KnnMetrics) -> Path:
    """Per-class table, worst classes first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "queries", "top1", "top5"])
        for c in sorted(metrics.per_class, key=lambda c: (c.top1, c.top5, c.name)):
            writer.writerow([c.name, c.queries, f"{c.top1:.4f}", f"{c.top5:.4f}"])
    return path


def evaluate_model(
    encoder: Encoder, gallery: Sequence[Sample], queries: Sequence[Sample], batch_size: int = 64
) -> KnnMetrics:
    g, g_labels = embed_references(encoder, gallery, batch_size)
    q = embed_samples(encoder, queries, batch_size, desc="queries")
    return knn_metrics(g, g_labels, q, [s.label for s in queries])
