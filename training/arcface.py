"""ArcFace head: pytorch-metric-learning's `ArcFaceLoss` (W inside the loss, margin in degrees).

`RetailKLIPModel` bundles the image tower and the loss in one module, so DistributedDataParallel
synchronises the class centres' gradients along with the tower's and one optimiser sees both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import ArcFaceLoss
from torch import nn


def make_arcface(num_classes: int, embed_dim: int, margin_deg: float, scale: float) -> ArcFaceLoss:
    return ArcFaceLoss(
        num_classes=num_classes, embedding_size=embed_dim, margin=margin_deg, scale=scale
    )


class RetailKLIPModel(nn.Module):
    def __init__(self, tower: nn.Module, loss: ArcFaceLoss) -> None:
        super().__init__()
        self.tower = tower
        self.loss = loss

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # L2-normalised in fp32: these are exactly the vectors the service stores and searches.
        embeddings = F.normalize(self.tower(images).float(), dim=-1)
        return self.loss(embeddings, labels)


@torch.no_grad()
def init_centres(loss: ArcFaceLoss, embeddings: torch.Tensor, labels: torch.Tensor) -> int:
    """Start each class centre at its mean normalised embedding under the pretrained tower.

    Random centres make the first steps push the pretrained features towards arbitrary
    directions; starting from the class means, the loss only has to sharpen an existing structure.
    Returns how many centres were set (classes without samples keep their random init).
    """
    embeddings = F.normalize(embeddings.float(), dim=-1)
    count = 0
    for c in labels.unique().tolist():
        mean = embeddings[labels == c].mean(0)
        loss.W[:, c] = F.normalize(mean, dim=0).to(loss.W.dtype)
        count += 1
    return count
