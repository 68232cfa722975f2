"""The detector trains: one step on a few tiny rendered shelves lowers the loss; ignore
regions are neither product nor background; train-detector resumes where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.detector.preprocess import DetectorPreprocess
from training.detector.data import ShelfCrops, clip_boxes
from training.detector.loop import DetectorTrainConfig, train_detector, train_step
from training.detector.loss import fcos_losses, pyramid_points
from training.detector.model import DetectorConfig, ProductDetector, freeze_batchnorm
from training.shelves.dataset import read_folder

TINY = DetectorConfig(fpn_channels=32, head_convs=1)


def batch(
    rendered: Path, crop: int = 160
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    crops = ShelfCrops(read_folder(rendered), DetectorPreprocess(long_side=256), crop=crop)
    items = [crops[(0, slot, slot)] for slot in range(2)]
    return (
        torch.stack([p for p, _, _ in items]),
        [b for _, b, _ in items],
        [i for _, _, i in items],
    )


def test_one_step_on_rendered_shelves_lowers_the_loss(rendered: Path) -> None:
    torch.manual_seed(0)
    model = ProductDetector(TINY, pretrained=True)
    model.train()
    freeze_batchnorm(model)
    pixels, boxes, ignores = batch(rendered)
    assert sum(len(b) for b in boxes) > 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        loss = torch.stack(list(train_step(model, pixels, boxes, ignores, None).values())).sum()
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[1] < losses[0]


def test_points_inside_an_ignore_region_cost_nothing() -> None:
    points = pyramid_points([(8, 8)], (8,), torch.device("cpu"))
    logits = torch.zeros(1, 64, 2)
    regression = torch.ones(1, 64, 4)
    hidden = torch.tensor([[0.0, 0.0, 32.0, 32.0]])  # the top-left quarter: 16 points
    base = fcos_losses(logits, regression, points, [torch.zeros(0, 4)], [torch.zeros(0, 4)], 1.5)
    ignored = fcos_losses(logits, regression, points, [torch.zeros(0, 4)], [hidden], 1.5)
    assert float(ignored["classification"]) == pytest.approx(
        float(base["classification"]) * 48 / 64, rel=1e-5
    )


def test_a_crop_keeps_boxes_it_mostly_holds_and_ignores_the_rest() -> None:
    boxes = np.array([[10, 10, 50, 90], [90, 10, 130, 90], [95, 10, 200, 90]], np.float32)
    kept, cut = clip_boxes(boxes, (0.0, 0.0, 120.0, 120.0), min_kept=0.6)
    assert kept.tolist() == [[10, 10, 50, 90], [90, 10, 120, 90]]  # 30 of 40 columns stay
    assert cut.tolist() == [[95, 10, 120, 90]]  # 25 of 105 columns: an ignore region


def test_train_detector_writes_its_files_and_resumes(rendered: Path, tmp_path: Path) -> None:
    work = tmp_path / "run"
    common = dict(
        data=str(rendered),
        val=str(rendered),
        work_dir=str(work),
        batch_size=2,
        crop=128,
        fpn_channels=32,
        head_convs=1,
        long_side=256,
        eval_every=2,
        val_images=2,
        workers=0,
        threads=1,
        warmup_steps=1,
    )
    train_detector(DetectorTrainConfig(steps=2, **common))  # type: ignore[arg-type]
    assert {"state.pt", "detector.pt", "curves.png", "metrics.jsonl", "config.json"} <= {
        p.name for p in work.iterdir()
    }
    result = train_detector(DetectorTrainConfig(steps=3, **common))  # type: ignore[arg-type]
    assert result["steps"] == 3
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3]
    assert {"val_ap50", "val_recall50", "val_threshold"} <= set(rows[-1])
