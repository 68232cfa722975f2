"""Real embeddings for the scale benchmark: the shared data sets through the shipped model.

References: the catalogue shots of both data sets (Grocery Store iconic images, GroZi-120-dev
web shots) stored as the service stores them (the image and its degraded views) and `copies`
shelf-augmented copies of each (training/augment.py).
Queries are photos never used as references: the Grocery Store test photos and GroZi-120-dev
shelf crops (at most 20 per product), exactly bench/recognition.py's query sets.
Embeddings are cached under runs/ (gitignored), so only the first run pays for forward passes.

`replicate` grows the real rows to any size with small noise; the ids it returns say which real
row each synthetic row came from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from app.encoder.torch_encoder import Encoder, load_encoder
from bench.recognition import ImageCache, embeddings, load_splits
from training.augment import shelf_transform
from training.data import Sample, load_image, read_grocery, read_grozi

ROOT = Path(__file__).resolve().parent.parent

MODEL = "retailklip-lite0-shelf"
GROCERY = ROOT.parent / "shared/data/grocery-store"
GROZI = ROOT.parent / "shared/data/grozi120-dev"
# Noise per dimension of a synthetic copy before re-normalising: cosine to its real row ~0.92,
# i.e. about as far as two photos of one product (measured: see docs/DEPLOYMENT.md).
NOISE = 0.008


@dataclass
class RealSet:
    references: np.ndarray  # (n, d) float32, L2-normalised
    queries: np.ndarray  # (m, d)
    model_id: str
    splits: dict[str, tuple[np.ndarray, list[str], np.ndarray, list[str]]]
    # split name -> (gallery, gallery labels, queries, query labels), as bench/recognition.py


def augmented(encoder: Encoder, samples: list[Sample], copies: int, batch: int) -> np.ndarray:
    transform = shelf_transform(encoder.preprocess)
    random.seed(0)
    torch.manual_seed(0)
    rows = []
    for start in tqdm(range(0, len(samples), batch), desc="augmented refs", leave=False):
        images = [load_image(s.path) for s in samples[start : start + batch]]
        tensors = [transform(image) for image in images for _ in range(copies)]
        rows.append(encoder.embed_tensor(torch.stack(tensors)))
    return np.concatenate(rows)


def cached(path: Path, make) -> np.ndarray:
    if path.is_file():
        return np.load(path)
    rows = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, rows)
    return rows


def real_set(cache: Path = ROOT / "runs/bench/scale_cache", copies: int = 1) -> RealSet:
    """Splits through bench/recognition.py's own readers and cache; the augmented catalogue
    shots cached beside them."""
    torch.set_num_threads(2)
    encoder = load_encoder(MODEL, "cpu")
    load = ImageCache()
    splits = {}
    for split in load_splits(GROCERY, GROZI):
        gallery, labels, queries = embeddings(encoder, split, cache / "recognition", load, 64)
        splits[split.name] = (gallery, labels, queries, [s.label for s in split.queries])
    catalogue = [*read_grocery(GROCERY, "iconic"), *read_grozi(GROZI, "catalogue")]
    aug = cached(
        cache / f"{MODEL}-catalogue-aug{copies}.npy",
        lambda: augmented(encoder, catalogue, copies, 16),
    )
    references = np.concatenate([splits["grocery"][0], splits["grozi"][0], aug])
    references = references.astype(np.float32)
    queries = np.concatenate([splits["grocery"][2], splits["grozi"][2]]).astype(np.float32)
    return RealSet(references, queries, encoder.model_id, splits)


def replicate(
    real: np.ndarray, n: int, noise: float = NOISE, seed: int = 0, chunk: int = 65536
) -> np.ndarray:
    """n rows: the real rows first, then noisy copies of randomly drawn real rows."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), np.float32)
    head = min(n, len(real))
    out[:head] = real[:head]
    for start in tqdm(range(head, n, chunk), desc="replicate", leave=False):
        stop = min(n, start + chunk)
        block = real[rng.integers(0, len(real), stop - start)]
        block = block + rng.standard_normal(block.shape, dtype=np.float32) * noise
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out


if __name__ == "__main__":
    data = real_set()
    print(f"{len(data.references)} reference vectors, {len(data.queries)} queries")
