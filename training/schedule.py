"""The learning-rate schedule, and the rate a run logs."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# The ArcFace class centres' parameter group (see training/loop.py::build).
HEAD_GROUP = "arcface_W"


def warmup_cosine(
    warmup_steps: int, total_steps: int, floor: float = 0.01
) -> Callable[[int], float]:
    """LambdaLR factor: linear warm-up to 1, then cosine down to `floor`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def get_learning_rate(optimizer: torch.optim.Optimizer) -> float:
    """The tower's top learning rate: its last layers' (lower layers get it times decay^depth;
    the class centres have their own `head_lr`)."""
    return max(g["lr"] for g in optimizer.param_groups if g.get("name") != HEAD_GROUP)
