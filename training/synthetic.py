"""A tiny synthetic image set (one folder per class) for smoke tests and demos.

Each class is a distinct colour and stripe orientation with per-image noise and jitter, so a
network can separate them but the pretrained features do not already do so perfectly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_synthetic_folder(
    root: str | Path, classes: int = 4, per_class: int = 8, size: int = 48, seed: int = 0
) -> Path:
    root = Path(root)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for c in range(classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = rng.uniform(40, 215, size=3)
        angle = np.pi * c / classes
        for i in range(per_class):
            phase = rng.uniform(0, 2 * np.pi)
            stripes = np.sin(2 * np.pi * 4 * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
            pixels = colour[None, None, :] + 40 * stripes[..., None]
            pixels += rng.normal(0, 25, size=(size, size, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root
