"""curves.png: training losses and the rendered validation set's AP50 and recall by step."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LOSSES = ("classification", "box", "centreness")
SCORES = ("val_ap50", "val_recall50", "val_recall70")


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.5), dpi=90)
    steps = [h["step"] for h in history]
    for key in LOSSES:
        if all(key in h for h in history):
            ax_loss.plot(steps, [h[key] for h in history], "o-", label=key, markersize=3)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=8)
    for key in SCORES:
        points = [(h["step"], h[key]) for h in history if key in h]
        if points:
            ax_val.plot(*zip(*points, strict=True), "s-", label=key, markersize=3)
    ax_val.set_ylim(0, 1)
    ax_val.set_xlabel("step")
    ax_val.set_ylabel("rendered validation")
    ax_val.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
