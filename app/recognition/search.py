"""From a query's raw search hits to its verdict: distinct SKUs, best first (plain data; routes
build the HTTP answers from it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.recognition.hit_names import Match
from app.recognition.tiers import TierName, Tiers, tier_of
from app.runtime.inference import RawHits

# One SKU may own many references; fetch this many neighbours per requested SKU so that
# `top_k` distinct SKUs survive grouping (and hits on just-deleted images can drop out).
OVERFETCH = 8
MIN_FETCH = 64
# Images looked up in SQL at first, per requested SKU: enough for `top_k` SKUs almost always
# (a few references each), so one short query answers; a deeper round follows only when not.
# The lookup's cost grows with the ids sent (PostgreSQL above all), the search's hardly.
LOOKUP_PER_SKU = 4
MIN_LOOKUP = 16


@dataclass(frozen=True)
class Hit:
    """A product's best reference for one query."""

    sku: str
    name: str
    score: float  # cosine similarity, rounded to 6 places
    image_id: int


@dataclass(frozen=True)
class CodeAnswer:
    """A barcode read from the photo, and the product holding it (None: none does)."""

    text: str
    format: str
    gtin: str | None  # GTIN-14 for a retail code
    box: tuple[int, int, int, int]  # in the upright photo's pixels
    sku: str | None


@dataclass(frozen=True)
class Verdict:
    matches: list[Hit]  # distinct SKUs, best first
    unknown: bool  # no match, or the best under the threshold
    model: str
    tier: TierName = "unknown"  # app/recognition/tiers.py
    margin: float | None = None  # the best product's lead over the second (None: fewer than 2)
    barcodes: tuple[
        CodeAnswer, ...
    ] = ()  # read from the photo (app/recognition/barcode_answers.py)


def _ranked_images(row_ids: list[int]) -> list[int]:
    """Distinct image ids of one query's hits, best first."""
    return list(dict.fromkeys(i for i in row_ids if i >= 0))


def _best(
    row_scores: list[float],
    row_ids: list[int],
    known: dict[int, Match],
    looked_up: set[int],
    top_k: int,
) -> dict[str, Hit] | None:
    """Each SKU's best hit, up to `top_k` SKUs; None while a hit that could count has not been
    looked up yet."""
    best: dict[str, Hit] = {}
    for score, image_id in zip(row_scores, row_ids, strict=True):
        if image_id < 0:
            break  # padding: no more hits
        if image_id not in looked_up:
            return None
        match = known.get(image_id)
        if match is None or match.sku in best:
            continue  # deleted meanwhile, or this SKU already has its best reference
        best[match.sku] = Hit(
            sku=match.sku, name=match.name, score=round(score, 6), image_id=image_id
        )
        if len(best) == top_k:
            break
    return best


def search_depth(top_k: int, vectors_per_image: int) -> int:
    """Neighbours to fetch so that `top_k` distinct SKUs (two at least: the verdict's tier needs
    the runner-up) survive grouping; an image with degraded views owns several of them."""
    return max(max(top_k, 2) * OVERFETCH, MIN_FETCH) * vectors_per_image


# Image ids -> their products, as far as they still exist (HitNames.matches_for, or its memory).
Lookup = Callable[[set[int]], dict[int, Match]]


def name_hits(
    hits: list[RawHits],
    lookup: Lookup,
    top_k: int,
    threshold: float,
    model_id: str,
    tiers: Tiers | None = None,
) -> list[Verdict]:
    """One verdict per query's raw hits: its distinct SKUs, best first. Names are asked for a
    few images per SKU wanted first, deeper only for queries that need more (rare)."""
    answer_k, top_k = top_k, max(top_k, 2)
    # Python numbers once, in C: the loops below touch each hit as an int / float.
    scores: list[list[float]] = [h.scores.tolist() for h in hits]
    ids: list[list[int]] = [h.image_ids.tolist() for h in hits]
    ranked = [_ranked_images(row) for row in ids]
    known: dict[int, Match] = {}
    looked_up: set[int] = set()
    found: list[dict[str, Hit] | None] = [None] * len(ranked)
    depth = max(top_k * LOOKUP_PER_SKU, MIN_LOOKUP)
    while any(best is None for best in found):
        # SQL decides what exists: an image deleted through another replica, still in this
        # replica's shards, drops out here.
        wanted = {
            i for row, best in zip(ranked, found, strict=True) if best is None for i in row[:depth]
        }
        known.update(lookup(wanted - looked_up))
        looked_up |= wanted
        found = [
            best if best is not None else _best(row_s, row_i, known, looked_up, top_k)
            for best, row_s, row_i in zip(found, scores, ids, strict=True)
        ]
        depth *= 4
    results = []
    for best in found:
        ranked_hits = list(best.values()) if best is not None else []
        unknown = not ranked_hits or ranked_hits[0].score < threshold
        top, second = _top_two(ranked_hits)
        results.append(
            Verdict(
                matches=ranked_hits[:answer_k],
                unknown=unknown,
                model=model_id,
                tier=tier_of(top, second, unknown, tiers),
                margin=None if top is None or second is None else round(top - second, 6),
            )
        )
    return results


def _top_two(hits: list[Hit]) -> tuple[float | None, float | None]:
    """The best two products' scores, None where there are fewer."""
    top = hits[0].score if hits else None
    second = hits[1].score if len(hits) > 1 else None
    return top, second
