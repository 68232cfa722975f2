"""Training crops from rendered shelves.

Each sample: a rendered photo, rescaled by a random factor (so the sizes of products keep
varying beyond the renderer's own range), a random square crop of `crop` pixels, a mirror
flip, then the serving normalisation (`app.detector.preprocess.normalise`). A box the crop
cuts keeps its clipped extent when at least `min_kept` of it stays in the crop, else it
becomes an ignore region, the rule the renderer applies to occlusion.

Sample j of step k draws from its own seeded generator (seed, k, j): a run resumed at step k
sees exactly the crops it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from app.detector.preprocess import DetectorPreprocess, normalise
from training.shelves.dataset import ShelfRecord


def clip_boxes(
    boxes: np.ndarray, window: tuple[float, float, float, float], min_kept: float
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to `window` (x0, y0, x1, y1) in window coordinates: (kept, cut), where cut
    boxes kept less than `min_kept` of their area (and still show something)."""
    if boxes.size == 0:
        empty = np.zeros((0, 4), np.float32)
        return empty, empty
    x0, y0, x1, y1 = window
    clipped = np.stack(
        [
            np.clip(boxes[:, 0], x0, x1),
            np.clip(boxes[:, 1], y0, y1),
            np.clip(boxes[:, 2], x0, x1),
            np.clip(boxes[:, 3], y0, y1),
        ],
        axis=1,
    )
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    w = clipped[:, 2] - clipped[:, 0]
    h = clipped[:, 3] - clipped[:, 1]
    left = w * h
    shifted = clipped - np.array([x0, y0, x0, y0], np.float32)
    shows = (w >= 2) & (h >= 2)
    kept = shows & (left >= min_kept * np.maximum(area, 1e-6))
    return shifted[kept].astype(np.float32), shifted[shows & ~kept].astype(np.float32)


class ShelfCrops(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    def __init__(
        self,
        records: Sequence[ShelfRecord],
        preprocess: DetectorPreprocess,
        crop: int = 512,
        scale: tuple[float, float] = (0.6, 1.5),
        min_kept: float = 0.6,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.preprocess = preprocess
        self.crop = crop
        self.scale = scale
        self.min_kept = min_kept
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def sample(
        self, record: ShelfRecord, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with Image.open(record.image) as opened:
            photo = opened.convert("RGB")
        f = float(np.exp(rng.uniform(np.log(self.scale[0]), np.log(self.scale[1]))))
        size = (max(16, round(photo.width * f)), max(16, round(photo.height * f)))
        fx, fy = size[0] / photo.width, size[1] / photo.height
        image = photo.resize(size, Image.Resampling.BILINEAR)
        scale = np.array([fx, fy, fx, fy], np.float32)
        c = self.crop
        x0 = int(rng.integers(0, max(0, size[0] - c) + 1))
        y0 = int(rng.integers(0, max(0, size[1] - c) + 1))
        x1, y1 = min(x0 + c, size[0]), min(y0 + c, size[1])
        window_f = (float(x0), float(y0), float(x1), float(y1))
        rgb = np.asarray(image.crop((x0, y0, x1, y1)), dtype=np.uint8)
        boxes, cut = clip_boxes(record.boxes * scale, window_f, self.min_kept)
        ignore, _ = clip_boxes(record.ignore * scale, window_f, 0.0)
        ignore = np.concatenate([ignore, cut])
        if rng.random() < 0.5:
            rgb = rgb[:, ::-1]
            boxes = flip(boxes, rgb.shape[1])
            ignore = flip(ignore, rgb.shape[1])
        # Beyond the photo the input is zero, as serving pads (the mean colour, normalised).
        pixels = np.zeros((3, c, c), np.float32)
        part = normalise(np.ascontiguousarray(rgb), self.preprocess)
        h, w = rgb.shape[:2]
        pixels[:, :h, :w] = part[:, :h, :w]
        return pixels, boxes, ignore

    def __getitem__(
        self, key: tuple[int, int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        step, slot, index = key  # a (step, slot, photo) triple from StepBatches
        rng = np.random.default_rng((self.seed, step, slot))
        pixels, boxes, ignore = self.sample(self.records[index], rng)
        return torch.from_numpy(pixels), torch.from_numpy(boxes), torch.from_numpy(ignore)


def flip(boxes: np.ndarray, width: int) -> np.ndarray:
    out = boxes.copy()
    out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return out


class StepBatches(torch.utils.data.Sampler[list[tuple[int, int, int]]]):
    """Batches as a pure function of the step: resuming at step k needs nothing else."""

    def __init__(self, n: int, batch_size: int, start: int, stop: int, seed: int) -> None:
        self.n, self.batch_size, self.start, self.stop, self.seed = n, batch_size, start, stop, seed

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for step in range(self.start, self.stop):
            rng = np.random.default_rng((self.seed, step, 1_000_000))
            picks = rng.integers(0, self.n, size=self.batch_size)
            yield [(step, slot, int(i)) for slot, i in enumerate(picks)]


def collate(
    items: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    return (
        torch.stack([p for p, _, _ in items]),
        [b for _, b, _ in items],
        [i for _, _, i in items],
    )
