"""From the graph's raw outputs to scored boxes, in numpy: points, scores, boxes, NMS.

The graph (training/detector/model.py `raw_outputs`) gives, for every point of every pyramid
level (finest first, row-major), two logits (product, centre-ness) and four distances to the
box edges in units of the level's stride. A point sits at the centre of its feature cell,
((i + 0.5) * stride), and every level is an exact grid because the input is padded to a
multiple of the coarsest stride (app/detector/preprocess.py). The score is FCOS's:
sqrt(sigmoid(product) * sigmoid(centre-ness)).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=32)
def pyramid_points(
    height: int, width: int, strides: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) point centres (x, y) in input pixels and (P,) their strides."""
    centres, point_strides = [], []
    for s in strides:
        ys = (np.arange(height // s, dtype=np.float32) + 0.5) * s
        xs = (np.arange(width // s, dtype=np.float32) + 0.5) * s
        gx, gy = np.meshgrid(xs, ys)
        centres.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
        point_strides.append(np.full(gx.size, s, dtype=np.float32))
    out = np.concatenate(centres), np.concatenate(point_strides)
    for array in out:
        array.setflags(write=False)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=np.float32)


def decode(
    logits: np.ndarray,
    regression: np.ndarray,
    input_hw: tuple[int, int],
    strides: tuple[int, ...],
    score_threshold: float,
    max_candidates: int = 4000,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (K, 4) x1, y1, x2, y2 in input pixels and scores (K,) above the threshold, the
    `max_candidates` best at most, for one image: logits (P, 2), regression (P, 4)."""
    centres, point_strides = pyramid_points(input_hw[0], input_hw[1], strides)
    if logits.shape[0] != centres.shape[0]:
        raise ValueError(
            f"graph gave {logits.shape[0]} points, an input of {input_hw} has {centres.shape[0]}"
        )
    scores = np.sqrt(sigmoid(logits[:, 0]) * sigmoid(logits[:, 1]))
    keep = np.flatnonzero(scores > score_threshold)
    if keep.size > max_candidates:
        keep = keep[np.argpartition(-scores[keep], max_candidates)[:max_candidates]]
    d = regression[keep] * point_strides[keep, None]
    c = centres[keep]
    boxes = np.stack(
        [c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], axis=1
    )
    return boxes.astype(np.float32), scores[keep].astype(np.float32)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9), dtype=np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best first, at most `limit`."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size and len(kept) < limit:
        best = int(order[0])
        kept.append(best)
        rest = order[1:]
        order = rest[iou_one_to_many(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(kept, dtype=np.int64)


def to_photo(
    boxes: np.ndarray,
    scale: tuple[float, float],
    photo_size: tuple[int, int],
) -> np.ndarray:
    """Input-pixel boxes -> photo pixels, clipped to the photo."""
    out = boxes / np.array([scale[0], scale[1], scale[0], scale[1]], np.float32)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, photo_size[0])
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, photo_size[1])
    return out


def postprocess(
    logits: np.ndarray,
    regression: np.ndarray,
    input_hw: tuple[int, int],
    strides: tuple[int, ...],
    scale: tuple[float, float],
    photo_size: tuple[int, int],
    score_threshold: float,
    nms_iou: float,
    max_boxes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One image's raw outputs -> (boxes in photo pixels, scores), best first, after NMS."""
    boxes, scores = decode(logits, regression, input_hw, strides, score_threshold)
    boxes = to_photo(boxes, scale, photo_size)
    wide = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    boxes, scores = boxes[wide], scores[wide]
    keep = nms(boxes, scores, nms_iou, max_boxes)
    return boxes[keep], scores[keep]
