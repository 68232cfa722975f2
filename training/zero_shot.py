"""The zero-shot experiment on the Grocery Store set: finetune on one half of the classes,
evaluate nearest-neighbour search on the other half only.

Split rule (fixed, documented): a fine class is "seen" when its coarse class id is even and
"unseen" when it is odd, so no coarse class (e.g. all apples, all oat-milk packs) straddles the
split: 35 seen classes (1198 train photos), 46 unseen classes (1341 test photos).
Protocols on the unseen half:
- catalogue-to-shelf: gallery = the iconic catalogue image of each class, queries = test photos;
- shelf-to-shelf: gallery = the train photos of those classes, queries = their test photos.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from app.encoder.torch_encoder import load_encoder
from training.data import read_grocery
from training.evaluate import evaluate_model, write_per_class_csv
from training.loop import TrainConfig, train

PROTOCOLS = {
    "catalogue-to-shelf": ("iconic", "test"),
    "shelf-to-shelf": ("train", "test"),
}


def finetune_seen(root: str, work: Path, cfg: dict[str, Any]) -> Path:
    """Train on the seen half's train photos only (validation: the seen half's val photos)."""
    out = work / "finetuned-seen.safetensors"
    train(
        TrainConfig(
            data=f"grocery:{root}:train:seen",
            val=f"grocery:{root}:val:seen",
            out=str(out),
            work_dir=str(work / "train"),
            **cfg,
        )
    )
    return out


def evaluate_unseen(root: str, models: dict[str, str], work: Path) -> list[dict[str, Any]]:
    """Both protocols on the unseen half for every model; one row per (model, protocol)."""
    rows = []
    for label, model in models.items():
        encoder = load_encoder(model, "auto")
        for protocol, (gallery_split, query_split) in PROTOCOLS.items():
            gallery = read_grocery(root, gallery_split, "unseen")
            queries = read_grocery(root, query_split, "unseen")
            metrics = evaluate_model(encoder, gallery, queries)
            write_per_class_csv(work / f"per_class_{label}_{protocol}.csv", metrics)
            rows.append(
                {
                    "model": label,
                    "protocol": protocol,
                    "image_size": encoder.preprocess.image_size,
                    "gallery": len(gallery),
                    **metrics.summary(),
                    "per_class": {c.name: c.top1 for c in metrics.per_class},
                }
            )
    return rows


def write_results(rows: list[dict[str, Any]], work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "results.json").write_text(json.dumps(rows, indent=2))
    with open(work / "results.csv", "w", newline="") as handle:
        keys = ["model", "protocol", "image_size", "gallery", "queries", "classes", "top1", "top5"]
        writer = csv.DictWriter(handle, fieldnames=[*keys, "mean_per_class"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| protocol | model | serving size | queries | top-1 | top-5 | mean per-class top-1 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(rows, key=lambda r: (r["protocol"], r["model"])):
        lines.append(
            f"| {r['protocol']} | {r['model']} | {r['image_size']} | {r['queries']} | "
            f"{r['top1']:.1%} | {r['top5']:.1%} | {r['mean_per_class']:.1%} |"
        )
    return "\n".join(lines)


def verdict(rows: list[dict[str, Any]]) -> str:
    """One plain sentence per protocol: does the finetuned encoder beat the frozen one?"""
    by = {(r["model"], r["protocol"]): r for r in rows}
    lines = []
    for protocol in PROTOCOLS:
        frozen, tuned = by.get(("frozen", protocol)), by.get(("finetuned", protocol))
        if not frozen or not tuned:
            continue
        delta = tuned["top1"] - frozen["top1"]
        word = "beats" if delta > 0 else "does NOT beat"
        lines.append(
            f"- {protocol}: the finetuned encoder {word} the frozen one on classes it never saw "
            f"({frozen['top1']:.1%} -> {tuned['top1']:.1%} top-1, {delta * 100:+.1f} points; "
            f"top-5 {frozen['top5']:.1%} -> {tuned['top5']:.1%})."
        )
        per = [c for c in frozen["per_class"] if c in tuned["per_class"]]
        better = sum(tuned["per_class"][c] > frozen["per_class"][c] for c in per)
        worse = sum(tuned["per_class"][c] < frozen["per_class"][c] for c in per)
        lines.append(f"  Per class: better on {better}, worse on {worse} of {len(per)} classes.")
    return "\n".join(lines)
