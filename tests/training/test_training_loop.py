"""End-to-end training on a tiny synthetic set on CPU: loss goes down, export loads in the service,
resume continues, eval runs, and the DDP path works with gloo on 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.encoder.checkpoint import load_checkpoint, read_metadata
from app.encoder.preprocess import PreprocessConfig, eval_transform
from app.encoder.torch_encoder import load_encoder, override_pipeline
from tests.support.paths import REPO
from training.arcface import RetailKLIPModel, make_arcface
from training.cli import main as cli_main
from training.data import ImageDataset, load_image, read_folder
from training.loop import TrainConfig, _centre_init, train
from training.state import load_state
from training.synthetic import make_synthetic_folder
from training.towers import start_tower

ROOT = REPO
SIZE = 32


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_folder(tmp_path_factory.mktemp("synthetic"), classes=4, per_class=8)


def _config(data: Path, work: Path, **overrides) -> TrainConfig:
    base = {
        "data": str(data),
        "val": str(data),
        "out": str(work / "model.safetensors"),
        "work_dir": str(work),
        "image_size": SIZE,
        "epochs": 1,
        "batch_size": 8,
        "per_class": 2,
        "lr": 1e-3,
        "head_lr": 1e-2,
        "warmup_epochs": 0.25,
        "margin": 10.0,
        "scale": 16.0,
        "threads": 2,
        "seed": 0,
    }
    return TrainConfig(**{**base, **overrides})


@torch.no_grad()
def _dataset_loss(model: RetailKLIPModel, data: ImageDataset, pre: PreprocessConfig) -> float:
    """ArcFace loss over the whole set through the serving transform (no augmentation)."""
    model.eval()
    transform = eval_transform(pre)
    batch = torch.stack([transform(load_image(s.path)) for s in data.samples])
    return float(model(batch, torch.tensor(data.targets)))


def _fresh_model(cfg: TrainConfig, data: ImageDataset) -> tuple[RetailKLIPModel, PreprocessConfig]:
    tower, tower_cfg, pre = start_tower(cfg.model, cfg.image_size)
    loss = make_arcface(len(data.class_names), tower_cfg.embed_dim, cfg.margin, cfg.scale)
    torch.manual_seed(cfg.seed)  # the same random centres train() starts from
    model = RetailKLIPModel(tower, loss)
    if cfg.init_centres:
        _centre_init(model, data, pre, torch.device("cpu"))
    return model, pre


def test_one_epoch_lowers_loss_and_export_loads_in_service(synthetic: Path, tmp_path: Path) -> None:
    # Random class centres, so that the epoch has something to learn on this easy set.
    cfg = _config(synthetic, tmp_path / "run", steps_per_epoch=8, init_centres=False)
    data = ImageDataset(read_folder(synthetic), eval_transform(PreprocessConfig(SIZE)))
    before_model, pre = _fresh_model(cfg, data)
    before = _dataset_loss(before_model, data, pre)

    summary = train(cfg)
    state = load_state(Path(cfg.work_dir) / "train_state.pt")
    after_model, _ = _fresh_model(cfg, data)
    after_model.load_state_dict(state["model"])
    after = _dataset_loss(after_model, data, pre)
    assert after < before, (before, after)
    assert summary["history"][0]["steps"] == 8
    assert (Path(cfg.work_dir) / "training_curve.png").stat().st_size > 1000
    rows = [
        json.loads(line) for line in (Path(cfg.work_dir) / "metrics.jsonl").read_text().splitlines()
    ]
    assert rows[0]["epoch"] == 1 and 0.0 <= rows[0]["val_top1"] <= 1.0

    # Export -> the service's loader -> the same embedding as the trained tower gives.
    _, _, export_pre, info = load_checkpoint(cfg.out)
    assert export_pre.image_size == summary["export_image_size"] == SIZE
    assert info["classes"] == data.class_names
    encoder = load_encoder(cfg.out, "cpu")
    images = [load_image(s.path) for s in data.samples[:5]]
    served = encoder.embed(images)
    with torch.no_grad():
        batch = torch.stack([eval_transform(export_pre)(im) for im in images])
        trained = F.normalize(after_model.tower.eval()(batch), dim=-1).numpy()
    np.testing.assert_allclose(served, trained, atol=1e-5)
    assert np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_pipeline_options_train_and_travel_into_the_export(synthetic: Path, tmp_path: Path) -> None:
    """Pad + GeM + shelf augmentations + anchors train; the export carries the pipeline; and
    WiSE-FT with a=0 exports exactly the starting weights under that pipeline."""
    pipeline = {
        "resize_mode": "pad",
        "pool": "gem",
        "flip": True,
        "reference_views": "blur,thumb48",
        "augment": "shelf",
        "anchors": str(synthetic),
        "anchor_repeat": 2,
        "steps_per_epoch": 3,
    }
    tuned = _config(synthetic, tmp_path / "tuned", **pipeline)
    summary = train(tuned)
    assert summary["history"][0]["steps"] == 3
    tower_cfg, pre, info = read_metadata(tuned.out)
    assert tower_cfg.pool == "gem"
    assert (pre.resize_mode, pre.flip, pre.reference_views) == ("pad", True, ("thumb48", "blur"))
    assert info["train_images"] == 2 * len(read_folder(synthetic)) + len(read_folder(synthetic))

    start = _config(synthetic, tmp_path / "start", interpolate=0.0, **pipeline)
    train(start)
    images = [load_image(s.path) for s in read_folder(synthetic)[:4]]
    frozen = override_pipeline(
        load_encoder("efficientnet-lite0", "cpu"), resize_mode="pad", pool="gem", flip=True
    )
    frozen.preprocess = replace(frozen.preprocess, image_size=SIZE)
    exported = load_encoder(start.out, "cpu")
    np.testing.assert_allclose(exported.embed(images), frozen.embed(images), atol=1e-5)
    assert not np.allclose(load_encoder(tuned.out, "cpu").embed(images), frozen.embed(images))


def test_resume_continues_from_saved_epoch(synthetic: Path, tmp_path: Path) -> None:
    work = tmp_path / "run"
    first = train(_config(synthetic, work, epochs=1, steps_per_epoch=2))
    second = train(_config(synthetic, work, epochs=2, steps_per_epoch=2))
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]
    assert load_state(work / "train_state.pt")["epoch"] == 1


def test_cli_train_and_eval_side_by_side(synthetic: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.safetensors"
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,label\n" + "".join(f"{s.path},{s.label}\n" for s in read_folder(synthetic))
    )
    args = ["train", "--data", str(manifest), "--out", str(out), "--work-dir", str(tmp_path / "w")]
    args += ["--image-size", str(SIZE), "--epochs", "1", "--steps-per-epoch", "2"]
    args += [
        "--batch-size",
        "8",
        "--per-class",
        "2",
        "--export-sizes",
        "32,48",
        "--val",
        str(manifest),
    ]
    assert cli_main(args) == 0
    assert load_checkpoint(out)[2].image_size in (32, 48)
    eval_out = tmp_path / "eval"
    args = ["eval", "--gallery", str(synthetic), "--query", str(manifest), "--out", str(eval_out)]
    assert cli_main([*args, "--model", "efficientnet-lite0", "--model", str(out)]) == 0
    summary = json.loads((eval_out / "summary.json").read_text())
    assert list(summary) == ["efficientnet-lite0", str(out)]
    for result in summary.values():
        # Queries are the gallery itself, so the nearest neighbour is the image itself.
        assert result["top1"] == 1.0 and result["queries"] == 32
    (table,) = eval_out.glob("per_class_1_*.csv")
    assert table.read_text().startswith("class,queries,top1,top5")
    assert len(list(eval_out.glob("per_class_*.png"))) == 2


def test_ddp_two_processes_gloo(synthetic: Path, tmp_path: Path) -> None:
    work = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--standalone", "-m", "training", "train", "--data", str(synthetic)]
    command += ["--out", str(work / "ddp.safetensors"), "--work-dir", str(work), "--device", "cpu"]
    command += ["--image-size", str(SIZE), "--epochs", "1", "--steps-per-epoch", "2"]
    command += ["--batch-size", "4", "--per-class", "2", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["world_size"] == 2 and rows[0]["steps"] == 2
    _, _, _, info = load_checkpoint(work / "ddp.safetensors")
    assert info["config"]["batch_size"] == 4


def test_vit_tower_trains_and_exports(synthetic: Path, tmp_path: Path) -> None:
    """An OpenCLIP ViT image tower (random weights: no hub here) through the same loop."""
    cfg = _config(synthetic, tmp_path / "vit", model="ViT-B-32:random", val=None)
    cfg.steps_per_epoch, cfg.batch_size = 1, 4
    summary = train(cfg)
    assert summary["history"][0]["steps"] == 1
    _, tower_cfg, pre, info = load_checkpoint(cfg.out)
    assert tower_cfg.vision_cfg["layers"] == 12 and pre.image_size == 224
    assert info["config"]["model"] == "ViT-B-32:random"
    assert load_encoder(cfg.out, "cpu").embed_dim == 512
