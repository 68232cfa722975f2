"""Fixtures for the renderer and detector tests: a tiny made-up source bank (no data set
needed), a few rendered shelves on disk, and a tiny detector trained for a few steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.shelves.sources import SourceBank, Sprite


def tiny_bank(seed: int = 0) -> SourceBank:
    """Coloured, striped "products" with an oval cut-out, and noise photos."""
    rng = np.random.default_rng(seed)
    sprites = []
    for _ in range(6):
        h, w = int(rng.integers(60, 120)), int(rng.integers(30, 80))
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[:] = rng.integers(30, 230, size=3)
        rgb[:: int(rng.integers(4, 12))] = rng.integers(0, 255, size=3)
        yy, xx = np.mgrid[0:h, 0:w]
        alpha = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2 <= 1.2
        sprites.append(Sprite(rgb, alpha.astype(np.float32)))
    photos = [rng.integers(0, 255, size=(96, 96, 3), dtype=np.uint8) for _ in range(4)]
    return SourceBank(cutouts=sprites, packages=sprites[:4], instore=photos[:2], produce=photos[2:])


@pytest.fixture(scope="session")
def bank() -> SourceBank:
    return tiny_bank()


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory, bank: SourceBank) -> Path:
    """Six rendered shelves at a 256 px long side, on disk as render-shelves writes them."""
    from training.shelves.dataset import write_photo
    from training.shelves.render import RenderConfig

    out = tmp_path_factory.mktemp("rendered")
    cfg = RenderConfig(long_side=256, product_px=(40.0, 90.0))
    for i in range(6):
        write_photo(out, i, bank, seed=3, cfg=cfg)
    return out
