"""A PNG grid of rendered shelves with their boxes (green) and ignore regions (magenta), for a
person to look at what the renderer makes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from training.shelves.render import RenderConfig, render_shelf
from training.shelves.sources import load_bank

CELL = 384


def write_preview(
    grocery_root: str | Path,
    path: Path,
    cfg: RenderConfig,
    seed: int = 0,
    count: int = 12,
    photos: int = 400,
    columns: int = 4,
) -> Path:
    bank = load_bank(grocery_root, instore=cfg.instore, max_photos=photos, seed=seed)
    rows = (count + columns - 1) // columns
    grid = Image.new("RGB", (columns * CELL, rows * CELL), (30, 30, 30))
    for i in range(count):
        shelf = render_shelf(bank, seed * 1_000_003 + i, cfg)
        image = Image.fromarray(shelf.image)
        draw = ImageDraw.Draw(image)
        for box in shelf.labels.ignore:
            draw.rectangle(box.tolist(), outline=(255, 0, 255), width=1)
        for box in shelf.labels.boxes:
            draw.rectangle(box.tolist(), outline=(0, 255, 0), width=2)
        image.thumbnail((CELL, CELL))
        x = (i % columns) * CELL + (CELL - image.width) // 2
        y = (i // columns) * CELL + (CELL - image.height) // 2
        grid.paste(image, (x, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
