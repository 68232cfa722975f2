"""PNG charts: training curve (loss and validation accuracy per epoch) and per-class accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: training runs on servers without a display
import matplotlib.pyplot as plt


def plot_history(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    path = Path(path)
    epochs = [h["epoch"] for h in history]
    fig, ax_loss = plt.subplots(figsize=(6, 3.5), dpi=90)
    ax_loss.plot(epochs, [h["loss"] for h in history], "o-", color="tab:red", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("ArcFace loss", color="tab:red")
    vals = [(h["epoch"], h["val_top1"]) for h in history if h.get("val_top1") is not None]
    if vals:
        ax_acc = ax_loss.twinx()
        ax_acc.plot(*zip(*vals, strict=True), "s-", color="tab:blue", label="val 1-NN top-1")
        ax_acc.set_ylabel("validation 1-NN top-1", color="tab:blue")
        ax_acc.set_ylim(0, 1)
    ax_loss.set_title(title or "training curve")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_per_class(rows: Sequence[tuple[str, float]], path: str | Path, title: str = "") -> Path:
    """Horizontal bars of per-class top-1, worst at the top."""
    path = Path(path)
    rows = sorted(rows, key=lambda r: r[1])
    fig, ax = plt.subplots(figsize=(6, max(3.0, 0.16 * len(rows))), dpi=80)
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("top-1")
    ax.tick_params(axis="y", labelsize=6)
    ax.set_title(title or "per-class accuracy")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_tradeoff(
    points: Sequence[dict[str, Any]],
    path: str | Path,
    references: Sequence[tuple[str, float, float]] = (),
    title: str = "",
) -> Path:
    """In-domain against out-of-domain top-1, one marker per (model, knob) point.

    `points`: dicts with `label`, `x` (Grocery Store top-1), `y` (GroZi-dev top-1) and an
    optional `series` (one colour per series, e.g. per training run).
    `references`: (label, x, y) markers drawn as stars (the frozen backbone, the shipped model).
    """
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=90)
    series: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        series.setdefault(str(point.get("series", "")), []).append(point)
    for name, members in series.items():
        xs, ys = [p["x"] for p in members], [p["y"] for p in members]
        ax.plot(xs, ys, "o", label=name or None)
        for p in members:
            ax.annotate(
                p["label"], (p["x"], p["y"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    for label, x, y in references:
        ax.plot([x], [y], "*", markersize=12, label=label)
    ax.set_xlabel("Grocery Store catalogue -> shelf top-1 (trained on)")
    ax.set_ylabel("GroZi-120 dev catalogue -> shelf top-1 (never seen)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or "in-domain vs out-of-domain recognition")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
