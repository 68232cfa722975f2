"""Catalogue hygiene: references of one product that look like another product's.

Both questions are nearest-neighbour searches of the product's own reference vectors against
the index, grouped by the other SKU; the product's own references (and their derived views)
are skipped, so only look-alikes of *other* products are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.catalogue.products import ProductStore
from app.index.shard_store import ShardStore
from app.recognition.hit_names import HitNames, Match

# Neighbours fetched per query vector, per view vector of an image: enough to get past the
# product's own references and the other products' several references each.
DEPTH = 64


@dataclass(frozen=True)
class NearDuplicate:
    upload: int  # index of the upload in the request
    sku: str  # the other product
    name: str
    image_id: int  # its reference that matched
    score: float


@dataclass(frozen=True)
class LookAlike:
    sku: str
    name: str
    score: float  # best cosine between any reference of the two products
    image_id: int  # that reference of the other product
    own_image_id: int  # and the one of the product asked about


def _neighbours(
    shards: ShardStore, names: HitNames, vectors: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray, dict[int, Match]]:
    scores, ids = shards.search(np.ascontiguousarray(vectors, dtype=np.float32), depth)
    return scores, ids, names.matches_for(ids.ravel().tolist())


def near_duplicates(
    shards: ShardStore,
    names: HitNames,
    sku: str,
    vectors: np.ndarray,
    threshold: float,
    vectors_per_image: int = 1,
) -> list[NearDuplicate]:
    """Per upload (row of `vectors`), every other product with a reference scoring at least
    `threshold`, best first; one warning per (upload, other product)."""
    if len(vectors) == 0 or shards.size == 0:
        return []
    scores, ids, known = _neighbours(shards, names, vectors, DEPTH * vectors_per_image)
    warnings = []
    for upload, (row_scores, row_ids) in enumerate(zip(scores, ids, strict=True)):
        seen: set[str] = set()
        for score, image_id in zip(row_scores, row_ids, strict=True):
            if score < threshold:
                break  # sorted best first
            match = known.get(int(image_id))
            if match is None or match.sku == sku or match.sku in seen:
                continue
            seen.add(match.sku)
            warnings.append(
                NearDuplicate(
                    upload=upload,
                    sku=match.sku,
                    name=match.name,
                    image_id=int(image_id),
                    score=round(float(score), 6),
                )
            )
    return warnings


def similar_products(
    shards: ShardStore,
    names: HitNames,
    sku: str,
    image_ids: np.ndarray,
    vectors: np.ndarray,
    limit: int,
    vectors_per_image: int = 1,
) -> list[LookAlike]:
    """The `limit` other products whose best reference pair with this one scores highest."""
    if len(vectors) == 0 or shards.size == 0:
        return []
    depth = (limit * 8 + len(image_ids)) * vectors_per_image
    scores, ids, known = _neighbours(shards, names, vectors, max(depth, DEPTH))
    best: dict[str, LookAlike] = {}
    for own, row_scores, row_ids in zip(image_ids, scores, ids, strict=True):
        for score, image_id in zip(row_scores, row_ids, strict=True):
            match = known.get(int(image_id))
            if match is None or match.sku == sku:
                continue
            current = best.get(match.sku)
            if current is None or score > current.score:
                best[match.sku] = LookAlike(
                    sku=match.sku,
                    name=match.name,
                    score=round(float(score), 6),
                    image_id=int(image_id),
                    own_image_id=int(own),
                )
    return sorted(best.values(), key=lambda s: (-s.score, s.sku))[:limit]


def look_alikes(
    products: ProductStore,
    shards: ShardStore,
    names: HitNames,
    skus: list[str],
    limit: int,
    vectors_per_image: int = 1,
) -> dict[str, list[LookAlike]]:
    """`similar_products` of stored products, from their own stored vectors (one query for
    all of them); a sku that does not exist is left out."""
    stored = products.vectors_of(skus)
    return {
        sku: similar_products(shards, names, sku, ids, vectors, limit, vectors_per_image)
        for sku, (ids, vectors) in stored.items()
    }
