"""FCOS targets and losses, with ignore regions.

The assignment follows torchvision's `FCOS.compute_loss` (centre sampling, one scale range per
level, the smallest box wins) and uses its loss functions (sigmoid focal loss, generalised IoU,
centre-ness BCE). What torchvision lacks is an ignore region: a point inside a box marked
`ignore` (a product mostly hidden behind another, one cut by the crop edge) is neither a product
nor background, so the classifier is not taught that half a bottle is shelf.

Points sit at the centres of the feature cells, ((i + 0.5) * stride), as in
`app/detector/decode.py`; the regression is the distance to the four edges in strides.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss


@dataclass
class Points:
    centres: Tensor  # (P, 2) x, y in input pixels
    strides: Tensor  # (P,)
    lower: Tensor  # (P,) scale range of the point's level (largest point-to-edge distance)
    upper: Tensor


def pyramid_points(
    shapes: list[tuple[int, int]], strides: tuple[int, ...], device: torch.device
) -> Points:
    centres, point_strides, lower, upper = [], [], [], []
    last = len(shapes) - 1
    for level, ((h, w), s) in enumerate(zip(shapes, strides, strict=True)):
        ys, xs = torch.meshgrid(
            (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * s,
            (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * s,
            indexing="ij",
        )
        centres.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))
        n = h * w
        point_strides.append(torch.full((n,), float(s), device=device))
        lower.append(torch.full((n,), 0.0 if level == 0 else 4.0 * s, device=device))
        upper.append(torch.full((n,), float("inf") if level == last else 8.0 * s, device=device))
    return Points(torch.cat(centres), torch.cat(point_strides), torch.cat(lower), torch.cat(upper))


def assign(points: Points, boxes: Tensor, radius: float) -> Tensor:
    """Index of the box each point regresses, -1 for none (torchvision's FCOS rule)."""
    n = points.centres.shape[0]
    if boxes.numel() == 0:
        return torch.full((n,), -1, dtype=torch.long, device=points.centres.device)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    near = (points.centres[:, None, :] - centres[None]).abs().amax(dim=2) < (
        radius * points.strides[:, None]
    )
    x, y = points.centres[:, 0:1], points.centres[:, 1:2]
    dist = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], 2)
    inside = dist.amin(dim=2) > 0
    largest = dist.amax(dim=2)
    in_range = (largest > points.lower[:, None]) & (largest < points.upper[:, None])
    match = near & inside & in_range
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    ranked = match.float() * (1e8 - areas[None])
    best, index = ranked.max(dim=1)
    index[best < 1e-5] = -1
    return index


def inside_any(points: Points, boxes: Tensor) -> Tensor:
    if boxes.numel() == 0:
        return torch.zeros(points.centres.shape[0], dtype=torch.bool, device=boxes.device)
    x, y = points.centres[:, 0:1], points.centres[:, 1:2]
    return ((x > boxes[:, 0]) & (y > boxes[:, 1]) & (x < boxes[:, 2]) & (y < boxes[:, 3])).any(
        dim=1
    )


def decode(regression: Tensor, points: Points) -> Tensor:
    d = regression * points.strides[:, None]
    c = points.centres
    return torch.stack(
        [c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], 1
    )


def fcos_losses(
    logits: Tensor,
    regression: Tensor,
    points: Points,
    boxes: list[Tensor],
    ignores: list[Tensor],
    radius: float,
) -> dict[str, Tensor]:
    """Losses summed over the batch and divided by the number of positive points.

    logits: (N, P, 2) class and centre-ness logits; regression: (N, P, 4) edge distances in
    strides; boxes/ignores: per image (M, 4) x1, y1, x2, y2 in input pixels."""
    cls_targets, cls_weights, pos_pred, pos_boxes, pos_points, pos_logit_ctr = (
        [],
        [],
        [],
        [],
        [],
        [],
    )
    for i, (gt, ig) in enumerate(zip(boxes, ignores, strict=True)):
        index = assign(points, gt, radius)
        positive = index >= 0
        target = positive.float()
        weight = torch.ones_like(target)
        weight[~positive & inside_any(points, ig)] = 0.0
        cls_targets.append(target)
        cls_weights.append(weight)
        if positive.any():
            pos_pred.append(regression[i][positive])
            pos_boxes.append(gt[index[positive]])
            pos_points.append(positive)
            pos_logit_ctr.append(logits[i, positive, 1])
    target = torch.stack(cls_targets)
    weight = torch.stack(cls_weights)
    num_pos = max(1.0, float(target.sum().item()))
    focal = sigmoid_focal_loss(logits[..., 0].float(), target, reduction="none")
    loss_cls = (focal * weight).sum() / num_pos
    if not pos_pred:
        zero = regression.sum() * 0.0 + logits[..., 1].sum() * 0.0
        return {"classification": loss_cls, "box": zero, "centreness": zero}
    reg_losses, ctr_losses = [], []
    for pred, gt, mask, ctr_logit in zip(
        pos_pred, pos_boxes, pos_points, pos_logit_ctr, strict=True
    ):
        sub = Points(
            points.centres[mask], points.strides[mask], points.lower[mask], points.upper[mask]
        )
        predicted = decode(pred.float(), sub)
        reg_losses.append(generalized_box_iou_loss(predicted, gt, reduction="sum"))
        c = sub.centres
        lr = torch.stack([c[:, 0] - gt[:, 0], gt[:, 2] - c[:, 0]], 1)
        tb = torch.stack([c[:, 1] - gt[:, 1], gt[:, 3] - c[:, 1]], 1)
        centreness = torch.sqrt(
            (lr.amin(1) / lr.amax(1)).clamp(min=0) * (tb.amin(1) / tb.amax(1)).clamp(min=0)
        )
        ctr_losses.append(
            F.binary_cross_entropy_with_logits(ctr_logit.float(), centreness, reduction="sum")
        )
    return {
        "classification": loss_cls,
        "box": torch.stack(reg_losses).sum() / num_pos,
        "centreness": torch.stack(ctr_losses).sum() / num_pos,
    }
