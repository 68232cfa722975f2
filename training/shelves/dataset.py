"""Rendered shelves on disk: `NNNNNN.jpg` beside `NNNNNN.json` (boxes, ignore regions, kinds,
scene), and `render.json` with the config and seed that made them.

Photo i is rendered from seed `seed * 1_000_003 + i`, so a folder can be filled in any order,
by several processes, resumed after a kill (existing pairs are skipped), or extended.
Rendering on the fly would cost more CPU than the detector's own training step on 2 cores;
rendered once, each photo serves many random crops.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from training.shelves.render import RenderConfig, render_shelf
from training.shelves.sources import SourceBank, load_bank

JPEG_QUALITY = 93  # the renderer already applied its own, random, JPEG quality


def photo_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + index


@dataclass
class ShelfRecord:
    image: Path
    boxes: np.ndarray  # (N, 4) float32
    ignore: np.ndarray  # (M, 4) float32
    scene: str = ""


def write_photo(out: Path, index: int, bank: SourceBank, seed: int, cfg: RenderConfig) -> None:
    stem = out / f"{index:06d}"
    if (stem.with_suffix(".json")).exists():
        return
    shelf = render_shelf(bank, photo_seed(seed, index), cfg)
    tmp = stem.with_suffix(".jpg.tmp")
    Image.fromarray(shelf.image).save(tmp, "JPEG", quality=JPEG_QUALITY)
    os.replace(tmp, stem.with_suffix(".jpg"))
    meta = {
        "boxes": shelf.labels.boxes.round(1).tolist(),
        "ignore": shelf.labels.ignore.round(1).tolist(),
        "kinds": shelf.labels.kinds,
        "scene": shelf.scene,
        "size": [int(shelf.image.shape[1]), int(shelf.image.shape[0])],
    }
    tmp = stem.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, stem.with_suffix(".json"))  # last: its presence marks the pair complete


_BANK: SourceBank | None = None


def _init_worker(root: str, instore: bool, photos: int) -> None:
    global _BANK
    _BANK = load_bank(root, instore=instore, max_photos=photos)


def _work(job: tuple[str, int, int, dict[str, Any]]) -> int:
    out, index, seed, cfg = job
    assert _BANK is not None
    write_photo(Path(out), index, _BANK, seed, RenderConfig.from_dict(cfg))
    return index


def render_folder(
    grocery_root: str | Path,
    out: str | Path,
    count: int,
    seed: int = 0,
    cfg: RenderConfig | None = None,
    workers: int = 1,
    photos: int = 1600,
) -> Path:
    cfg = cfg or RenderConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = {"seed": seed, "config": cfg.to_dict(), "source": str(grocery_root)}
    marker = out / "render.json"
    if marker.exists():
        before = json.loads(marker.read_text())
        if before["seed"] != seed or before["config"] != json.loads(json.dumps(cfg.to_dict())):
            raise SystemExit(f"{out} was rendered with another seed or config: {before}")
    marker.write_text(json.dumps(info, indent=2))
    todo = [i for i in range(count) if not (out / f"{i:06d}.json").exists()]
    jobs = [(str(out), i, seed, cfg.to_dict()) for i in todo]
    bar = tqdm(total=count, initial=count - len(todo), desc="render", unit="photo")
    if workers <= 1:
        _init_worker(str(grocery_root), cfg.instore, photos)
        for job in jobs:
            _work(job)
            bar.update()
    else:
        with mp.get_context("fork").Pool(
            workers, initializer=_init_worker, initargs=(str(grocery_root), cfg.instore, photos)
        ) as pool:
            for _ in pool.imap_unordered(_work, jobs, chunksize=4):
                bar.update()
    bar.close()
    return out


def read_folder(folder: str | Path) -> list[ShelfRecord]:
    records = []
    for meta_path in sorted(Path(folder).glob("*.json")):
        if meta_path.name == "render.json":
            continue
        meta = json.loads(meta_path.read_text())
        records.append(
            ShelfRecord(
                meta_path.with_suffix(".jpg"),
                np.asarray(meta["boxes"], np.float32).reshape(-1, 4),
                np.asarray(meta["ignore"], np.float32).reshape(-1, 4),
                meta.get("scene", ""),
            )
        )
    return records


def iter_folders(specs: str) -> Iterator[Path]:
    for part in specs.split(","):
        if part.strip():
            yield Path(part.strip())
