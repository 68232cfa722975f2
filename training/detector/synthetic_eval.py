"""Validation on held-out rendered shelves (never the dev photos): AP50 and recall, during
training and to choose the shipped score threshold (the F1-best one on rendered shelves)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from app.detector.preprocess import DetectorPreprocess
from training.detector.inference import torch_detect
from training.detector.metrics import (
    PhotoResult,
    average_precision,
    best_f1_threshold,
    recall,
)
from training.detector.model import ProductDetector
from training.shelves.dataset import ShelfRecord


def rendered_results(
    model: ProductDetector,
    records: Sequence[ShelfRecord],
    preprocess: DetectorPreprocess,
    device: torch.device,
) -> list[PhotoResult]:
    photos = []
    for record in records:
        with Image.open(record.image) as image:
            image.load()
            boxes, scores = torch_detect(model, image, preprocess, device)
        photos.append(PhotoResult(boxes, scores, record.boxes, record.ignore))
    return photos


def evaluate_rendered(
    model: ProductDetector,
    records: Sequence[ShelfRecord],
    preprocess: DetectorPreprocess,
    device: torch.device,
) -> dict[str, Any]:
    photos = rendered_results(model, records, preprocess, device)
    threshold, f1 = best_f1_threshold(photos)
    return {
        "val_ap50": average_precision(photos, 0.5),
        "val_recall50": recall(photos, 0.5, threshold),
        "val_recall70": recall(photos, 0.7, threshold),
        "val_threshold": threshold,
        "val_f1": f1,
    }
