"""From query embeddings to verdicts: distinct SKUs, best first (plain data; routes build the
HTTP answers from it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.catalogue import Catalogue
from app.index.shards import ShardSet

# One SKU may own many references; fetch this many neighbours per requested SKU so that
# `top_k` distinct SKUs survive grouping (and hits on just-deleted images can drop out).
OVERFETCH = 8
MIN_FETCH = 64


@dataclass(frozen=True)
class Hit:
    """A product's best reference for one query."""

    sku: str
    name: str
    score: float  # cosine similarity, rounded to 6 places
    image_id: int


@dataclass(frozen=True)
class Verdict:
    matches: list[Hit]  # distinct SKUs, best first
    unknown: bool  # no match, or the best under the threshold
    model: str


def classify_vectors(
    shards: ShardSet,
    catalogue: Catalogue,
    queries: np.ndarray,
    top_k: int,
    threshold: float,
    vectors_per_image: int = 1,
    allowed: np.ndarray | None = None,
) -> list[Verdict]:
    # An image with degraded views owns several neighbours; fetch deeper to keep top_k SKUs.
    k = max(top_k * OVERFETCH, MIN_FETCH) * vectors_per_image
    # A degraded view's hit comes back as its image: it never shows as a match of its own.
    # `allowed` (a catalogue / metadata scope) is applied inside the index search.
    scores, ids = shards.search(np.ascontiguousarray(queries, dtype=np.float32), k, allowed)
    known = catalogue.matches_for(ids.ravel().tolist())
    results = []
    for row_scores, row_ids in zip(scores, ids, strict=True):
        best: dict[str, Hit] = {}
        for score, image_id in zip(row_scores, row_ids, strict=True):
            match = known.get(int(image_id))
            if match is None or match.sku in best:
                continue  # deleted meanwhile, or this SKU already has its best reference
            best[match.sku] = Hit(
                sku=match.sku, name=match.name, score=round(float(score), 6), image_id=int(image_id)
            )
            if len(best) == top_k:
                break
        matches = list(best.values())
        unknown = not matches or matches[0].score < threshold
        results.append(Verdict(matches=matches, unknown=unknown, model=shards.model_id))
    return results
