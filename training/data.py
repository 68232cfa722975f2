"""Training and evaluation data: sample lists from folders, CSV manifests or the Grocery Store set.

Every reader returns a list of `Sample(path, label)` with string labels; datasets map labels to
indices themselves, so gallery and query sets from different readers compare by name.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from app.encoder.decode import decode_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
# Training reads local, trusted files; the limit only guards against an absurd file in a folder.
MAX_PIXELS = 100_000_000
GROCERY_SPLITS = ("train", "val", "test", "iconic")
GROCERY_HALVES = ("all", "seen", "unseen")
GROZI_PARTS = ("catalogue", "shelf")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str


def read_folder(root: str | Path) -> list[Sample]:
    """`root/<label>/<image>`: one sub-folder per class."""
    root = Path(root)
    samples = [
        Sample(path, class_dir.name)
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(class_dir.rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not samples:
        raise ValueError(f"no images found under {root} (expected one sub-folder per class)")
    return samples


def read_manifest(path: str | Path) -> list[Sample]:
    """CSV `path,label` (header optional); relative paths are relative to the CSV's folder."""
    path = Path(path)
    samples = []
    with open(path, newline="") as handle:
        for i, row in enumerate(csv.reader(handle)):
            if not row or (i == 0 and [c.strip().lower() for c in row[:2]] == ["path", "label"]):
                continue
            image = Path(row[0].strip())
            samples.append(
                Sample(image if image.is_absolute() else path.parent / image, row[1].strip())
            )
    if not samples:
        raise ValueError(f"manifest {path} lists no images")
    return samples


@dataclass(frozen=True)
class GroceryClass:
    name: str
    fine_id: int
    coarse_name: str
    coarse_id: int
    iconic: str


def grocery_classes(root: str | Path) -> list[GroceryClass]:
    with open(Path(root) / "classes.csv", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return [GroceryClass(r[0], int(r[1]), r[2], int(r[3]), r[4].lstrip("/")) for r in rows if r]


def grocery_half(cls: GroceryClass, half: str) -> bool:
    """The zero-shot split rule: by coarse class parity, so no coarse class straddles the split.

    "seen" = even coarse id (the classes finetuning may use), "unseen" = odd coarse id.
    """
    if half == "all":
        return True
    return (cls.coarse_id % 2 == 0) == (half == "seen")


def read_grocery(root: str | Path, split: str, half: str = "all") -> list[Sample]:
    """The shared Grocery Store layout; labels are fine class names; `iconic` = catalogue images."""
    if split not in GROCERY_SPLITS or half not in GROCERY_HALVES:
        raise ValueError(
            f"grocery split must be one of {GROCERY_SPLITS}, half one of {GROCERY_HALVES}"
        )
    root = Path(root)
    classes = {c.fine_id: c for c in grocery_classes(root) if grocery_half(c, half)}
    if split == "iconic":
        return [
            Sample(root / c.iconic, c.name)
            for c in sorted(classes.values(), key=lambda c: c.fine_id)
        ]
    samples = []
    for line in (root / f"{split}.txt").read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and int(parts[1]) in classes:
            samples.append(Sample(root / parts[0], classes[int(parts[1])].name))
    return samples


def read_grozi(
    root: str | Path, part: str, per_class: int | None = None, seed: int = 0
) -> list[Sample]:
    """GroZi-120 (`catalogue/<id>/`, `shelf/<id>/`): labels are the product ids.

    For evaluation and model selection only (see the folder's PROVENANCE.md); never train on it.
    `per_class` keeps at most that many images per product, drawn with `seed`. The draw is a
    per-product shuffle, so the 5-per-product sample is a subset of the 20-per-product one.
    """
    if part not in GROZI_PARTS:
        raise ValueError(f"grozi part must be one of {GROZI_PARTS}, not {part!r}")
    folder = Path(root) / part
    if not folder.is_dir():
        raise ValueError(f"no GroZi-120 {part} folder at {folder}")
    samples: list[Sample] = []
    for product in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: int(p.name)):
        files = sorted(f for f in product.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if per_class is not None:
            random.Random(f"{seed}:{product.name}").shuffle(files)
            files = sorted(files[:per_class])
        samples.extend(Sample(f, product.name) for f in files)
    return samples


def read_spec(spec: str) -> list[Sample]:
    """`grocery:ROOT:SPLIT[:HALF]`, `grozi:ROOT:PART[:PER_CLASS]`, a `.csv` manifest, or a
    folder with one sub-folder per class."""
    if spec.startswith("grozi:"):
        parts = spec.split(":")
        if len(parts) not in (3, 4):
            raise ValueError(f"bad grozi spec {spec!r}: use grozi:ROOT:PART[:PER_CLASS]")
        return read_grozi(parts[1], parts[2], int(parts[3]) if len(parts) == 4 else None)
    if spec.startswith("grocery:"):
        parts = spec.split(":")
        if len(parts) not in (3, 4):
            raise ValueError(f"bad grocery spec {spec!r}: use grocery:ROOT:SPLIT[:HALF]")
        return read_grocery(parts[1], parts[2], parts[3] if len(parts) == 4 else "all")
    path = Path(spec)
    if path.is_dir():
        return read_folder(path)
    if path.suffix.lower() == ".csv":
        return read_manifest(path)
    raise ValueError(
        f"cannot read data {spec!r}: expected a folder, a .csv manifest or grocery:..."
    )


def load_image(path: Path) -> Image.Image:
    """Decode exactly as the service does (EXIF orientation, RGB)."""
    return decode_image(path.read_bytes(), MAX_PIXELS)


def shrink(image: Image.Image, shorter_side: int) -> Image.Image:
    """Downscale for the in-memory cache; never upscale."""
    w, h = image.size
    scale = shorter_side / min(w, h)
    if scale >= 1:
        return image
    return image.resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC
    )


class ImageDataset(Dataset):
    """Samples with integer targets; images decoded once and kept in memory, shrunk to `cache_side`.

    The photos are small, so caching them removes JPEG decoding from the 2-core training loop.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Image.Image], torch.Tensor],
        class_names: Sequence[str] | None = None,
        cache_side: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.class_names = list(class_names or sorted({s.label for s in self.samples}))
        index = {name: i for i, name in enumerate(self.class_names)}
        self.targets = [index[s.label] for s in self.samples]
        self.transform = transform
        self.cache: list[Image.Image] | None = None
        if cache_side is not None:
            self.cache = [shrink(load_image(s.path), cache_side) for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.cache[i] if self.cache is not None else load_image(self.samples[i].path)
        return self.transform(image), self.targets[i]
