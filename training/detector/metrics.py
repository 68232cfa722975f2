"""Detection metrics: one-to-one matching by score, recall at an IoU, AP (all-point, VOC 2010+).

A detection matches the unmatched ground-truth box it overlaps most, if that IoU reaches the
threshold; detections are taken best score first, over each photo. On rendered shelves a
detection that lies mostly inside an ignore region (a product mostly hidden) is neither a
true nor a false positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Area shared by each box of `a` with each box of `b` (len(a) x len(b))."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    return np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    inter = intersection(a, b)
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def inside_share(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of each box of `a` that lies inside each box of `b`."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    return intersection(a, b) / np.maximum(area(a)[:, None], 1e-9)


@dataclass
class PhotoResult:
    boxes: np.ndarray  # detections (K, 4)
    scores: np.ndarray  # (K,)
    truth: np.ndarray  # ground truth (M, 4)
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


def match(photo: PhotoResult, iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per detection, best score first: (scores, is_true_positive, counts); `counts` is False
    for detections inside an ignore region."""
    order = np.argsort(-photo.scores, kind="stable")
    boxes, scores = photo.boxes[order], photo.scores[order]
    overlaps = iou_matrix(boxes, photo.truth)
    ignored = np.zeros(len(boxes), bool)
    if len(photo.ignore):
        ignored = np.asarray((inside_share(boxes, photo.ignore) >= 0.5).any(axis=1))
    taken = np.zeros(len(photo.truth), bool)
    tp = np.zeros(len(boxes), bool)
    counts = np.ones(len(boxes), bool)
    for k in range(len(boxes)):
        if len(photo.truth):
            candidates = np.where(taken, -1.0, overlaps[k])
            best = int(np.argmax(candidates))
            if candidates[best] >= iou:
                taken[best] = True
                tp[k] = True
                continue
        if ignored[k]:
            counts[k] = False
    return scores, tp, counts


def recall(photos: list[PhotoResult], iou: float, min_score: float = 0.0) -> float:
    total = sum(len(p.truth) for p in photos)
    found = 0
    for p in photos:
        keep = p.scores >= min_score
        found += int(
            match(PhotoResult(p.boxes[keep], p.scores[keep], p.truth, p.ignore), iou)[1].sum()
        )
    return found / max(1, total)


def average_precision(photos: list[PhotoResult], iou: float = 0.5) -> float:
    scores, tps = [], []
    for p in photos:
        s, tp, counts = match(p, iou)
        scores.append(s[counts])
        tps.append(tp[counts])
    if not scores:
        return 0.0
    all_scores = np.concatenate(scores)
    all_tp = np.concatenate(tps)[np.argsort(-all_scores, kind="stable")]
    total = sum(len(p.truth) for p in photos)
    if total == 0 or all_tp.size == 0:
        return 0.0
    cum_tp = np.cumsum(all_tp)
    precision = cum_tp / np.arange(1, len(all_tp) + 1)
    rec = cum_tp / total
    # All-point interpolation: precision made monotone, integrated over recall.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], rec]))
    return float((steps * precision).sum())


def best_f1_threshold(photos: list[PhotoResult], iou: float = 0.5) -> tuple[float, float]:
    """(threshold, F1) maximising F1 over the given photos' detection scores."""
    scores, tps = [], []
    for p in photos:
        s, tp, counts = match(p, iou)
        scores.append(s[counts])
        tps.append(tp[counts])
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    if all_scores.size == 0:
        return 0.5, 0.0
    order = np.argsort(-all_scores, kind="stable")
    all_scores, all_tp = all_scores[order], np.concatenate(tps)[order]
    total = max(1, sum(len(p.truth) for p in photos))
    cum_tp = np.cumsum(all_tp)
    n = np.arange(1, len(all_tp) + 1)
    f1 = 2 * cum_tp / (n + total)
    best = int(np.argmax(f1))
    return float(all_scores[best]), float(f1[best])
