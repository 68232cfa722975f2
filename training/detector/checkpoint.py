"""The trained detector on disk: weights, architecture, preprocessing and history in one
`torch.save` dict of tensors and plain values (read back with `weights_only=True`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from app.detector.preprocess import DetectorPreprocess
from app.storage.files import atomic_path
from training.detector.model import DetectorConfig, ProductDetector

FORMAT = "retailklip-detector-1"


def save_detector(
    path: Path,
    model: ProductDetector,
    preprocess: DetectorPreprocess,
    history: list[dict[str, Any]],
    train_config: dict[str, Any],
) -> Path:
    payload = {
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "preprocess": preprocess.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history,
        "train_config": train_config,
    }
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_detector(path: str | Path) -> tuple[ProductDetector, DetectorPreprocess, dict[str, Any]]:
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a detector checkpoint ({FORMAT})")
    model = ProductDetector(DetectorConfig.from_dict(payload["config"]), pretrained=False)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, DetectorPreprocess.from_dict(payload["preprocess"]), payload
