"""Calibrating the verdict tiers (app/recognition/tiers.py) of a model, and measuring them.

Calibration runs on data the model may learn from: the Grocery Store val split, with the
iconic catalogue images as references (stored as the service stores them, degraded views
included) and the val photos as queries. It picks the `confident` thresholds (best score,
margin over the second product) that cover the most queries while the top match stays right
at least `precision` of the time there, asking for more than the service must promise so that
products and stores the model never saw (GroZi-dev) keep it.

    python -m training.tiers --model retailklip-lite0-shelf [--precision 0.95] [--write]
        [--report]   # and the tier table on Grocery Store test and GroZi-dev (never fitted to)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.recognition.tiers import Tiers, tier_of
from training.data import Sample, read_grocery, read_grozi
from training.evaluate import class_scores, embed_references, embed_samples

MIN_CONFIDENT = 50  # queries the confident tier must hold on the calibration data


@dataclass(frozen=True)
class Scored:
    """Per query: the best two products' scores and whether the best is the right one."""

    top: np.ndarray
    second: np.ndarray
    correct: np.ndarray

    @property
    def margin(self) -> np.ndarray:
        return self.top - self.second


def scored(gallery: np.ndarray, labels: list[str], queries: np.ndarray, truth: list[str]) -> Scored:
    scores, names = class_scores(gallery, labels, queries)
    order = np.argsort(-scores, axis=1)
    rows = np.arange(len(scores))
    top = scores[rows, order[:, 0]]
    second = scores[rows, order[:, 1]] if scores.shape[1] > 1 else np.full(len(top), -1.0)
    best = np.asarray(names)[order[:, 0]]
    return Scored(top, second, best == np.asarray(truth))


def calibrate(data: Scored, unknown_threshold: float, precision: float, source: str) -> Tiers:
    """The (score, margin) pair that puts the most queries in the confident tier while the top
    match is right for at least `precision` of them (and at least MIN_CONFIDENT queries)."""
    known = data.top >= unknown_threshold
    scores = np.unique(np.round(np.quantile(data.top[known], np.linspace(0, 0.99, 100)), 4))
    margins = np.unique(np.round(np.quantile(data.margin[known], np.linspace(0, 0.99, 100)), 4))
    best: tuple[float, float, float, float] | None = None  # coverage, precision, score, margin
    for score in scores:
        for margin in margins:
            chosen = known & (data.top >= score) & (data.margin >= margin)
            count = int(chosen.sum())
            if count < MIN_CONFIDENT:
                continue
            right = float(data.correct[chosen].mean())
            coverage = count / len(data.top)
            if right >= precision and (best is None or (coverage, right) > best[:2]):
                best = (coverage, right, float(score), float(margin))
    if best is None:
        raise SystemExit(f"no thresholds reach {precision:.1%} on {source}; lower --precision")
    coverage, right, score, margin = best
    return Tiers(score, margin, round(right, 4), round(coverage, 4), source)


def tier_table(data: Scored, unknown_threshold: float, tiers: Tiers | None) -> list[list[str]]:
    """Rows (tier, share of queries, top-1 precision within it)."""
    names = np.array(
        [
            tier_of(float(t), float(s), bool(t < unknown_threshold), tiers)
            for t, s in zip(data.top, data.second, strict=True)
        ]
    )
    rows = []
    for tier in ("confident", "ambiguous", "unknown"):
        mask = names == tier
        share = mask.mean()
        right = f"{data.correct[mask].mean():.1%}" if mask.any() else "-"
        rows.append([tier, f"{share:.1%} ({int(mask.sum())})", right])
    return rows


def embed_split(
    encoder: Any, gallery: list[Sample], queries: list[Sample], cache: Path | None = None
) -> Scored:
    """Each query's best two products over the gallery as the service stores it; cached
    per (model, data) under `cache` when given."""
    if cache is not None and cache.is_file():
        data = np.load(cache)
        return Scored(data["top"], data["second"], data["correct"])
    refs, labels = embed_references(encoder, gallery, desc="references")
    photos = embed_samples(encoder, queries, desc="queries")
    result = scored(refs, labels, photos, [s.label for s in queries])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, top=result.top, second=result.second, correct=result.correct)
    return result


def main(argv: list[str] | None = None) -> int:
    from app.encoder.checkpoint import write_tiers
    from app.encoder.model_spec import parse_model_spec
    from app.encoder.torch_encoder import load_encoder
    from app.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    shared = Path(__file__).resolve().parents[2] / "shared/data"
    parser.add_argument("--grocery", type=Path, default=shared / "grocery-store")
    parser.add_argument("--grozi", type=Path, default=shared / "grozi120-dev")
    parser.add_argument("--precision", type=float, default=0.95)
    parser.add_argument("--report", action="store_true", help="tiers on Grocery test, GroZi-dev")
    parser.add_argument("--write", action="store_true", help="store them in the checkpoint")
    parser.add_argument("--cache", type=Path, default=Path("runs/tiers"), help="scores per split")
    args = parser.parse_args(argv)
    encoder = load_encoder(args.model, "cpu")
    catalogue = read_grocery(args.grocery, "iconic")

    def cached(split: str) -> Path:
        return args.cache / f"{encoder.model_id.replace(':', '_')}-{split}.npz"

    data = embed_split(encoder, catalogue, read_grocery(args.grocery, "val"), cached("val"))
    tables = {"Grocery Store val (calibration)": data}
    if args.report:
        tables["Grocery Store test"] = embed_split(
            encoder, catalogue, read_grocery(args.grocery, "test"), cached("test")
        )
        tables["GroZi-dev <= 20 per product"] = embed_split(
            encoder,
            read_grozi(args.grozi, "catalogue"),
            read_grozi(args.grozi, "shelf", per_class=20, seed=0),
            cached("grozi20"),
        )
    threshold = Settings().unknown_threshold
    tiers = calibrate(data, threshold, args.precision, "grocery-store val")
    print(f"{args.model}: {tiers}")
    print("\n| data | tier | share of queries | top-1 precision |\n| --- | --- | --- | --- |")
    for name, table in tables.items():
        for row in tier_table(table, threshold, tiers):
            print(f"| {name} | " + " | ".join(row) + " |")
    if args.write:
        spec = parse_model_spec(args.model)
        if spec.kind != "checkpoint" or spec.path is None:
            raise SystemExit(f"{args.model} is not a checkpoint file: set RETAILKLIP_CONFIDENT_*")
        write_tiers(spec.path, tiers.to_json())
        print(f"written to {spec.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
