"""`retailklip train-detector`: the detector on rendered shelves, resumable at any step.

State (model, optimiser, step, history) is written to `WORK_DIR/state.pt` every
`save_minutes`, at the end and on SIGTERM (after the current step), atomically (temp file,
fsync, os.replace); re-running the same command continues from it. The batches are a function
of the step (training/detector/data.py), so a resumed run trains on what the uninterrupted run
would have. Every `eval_every` steps the model is measured on a held-out rendered folder (AP50,
recall) and `curves.png` is redrawn; `snapshots` keeps copies of the weights at chosen steps
for later comparison.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from app.detector.preprocess import DetectorPreprocess
from training.detector.checkpoint import save_detector
from training.detector.data import ShelfCrops, StepBatches, collate
from training.detector.loss import fcos_losses, pyramid_points
from training.detector.model import DetectorConfig, ProductDetector, freeze_batchnorm
from training.detector.plots import plot_curves
from training.detector.synthetic_eval import evaluate_rendered
from training.shelves.dataset import iter_folders, read_folder
from training.state import load_state, save_state


@dataclass
class DetectorTrainConfig:
    data: str  # comma-separated rendered folders
    work_dir: str
    val: str = ""  # a rendered folder for validation (never one trained on)
    steps: int = 6000
    batch_size: int = 4
    crop: int = 512
    scale_min: float = 0.6
    scale_max: float = 1.5
    lr: float = 2e-3
    trunk_lr_factor: float = 0.5
    weight_decay: float = 1e-4
    warmup_steps: int = 300
    clip_grad: float = 5.0
    fpn_channels: int = 64
    head_convs: int = 2
    long_side: int = 1024
    seed: int = 0
    eval_every: int = 500
    val_images: int = 80
    save_minutes: float = 5.0
    snapshot_every: int = 0  # keep weights every N steps (0: only the final ones)
    workers: int = 1
    threads: int = 0
    device: str = "auto"
    # auto: fp16 autocast on CUDA; bfloat16 autocast on a CPU with AVX512-BF16 (about twice
    # as fast as fp32 here; the losses are computed in fp32 either way); fp32: neither.
    precision: str = "auto"
    resume: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.float16
    if precision == "bf16" or torch.cpu._is_avx512_bf16_supported():
        return torch.bfloat16
    return None


def lr_factor(step: int, cfg: DetectorTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: ProductDetector, cfg: DetectorTrainConfig) -> torch.optim.Optimizer:
    trunk = [p for p in model.backbone.trunk.parameters() if p.requires_grad]
    trunk_ids = {id(p) for p in trunk}
    rest = [p for p in model.parameters() if id(p) not in trunk_ids]
    decay = [p for p in rest if p.ndim > 1]
    no_decay = [p for p in rest if p.ndim <= 1]
    return torch.optim.AdamW(
        [
            {"params": trunk, "lr": cfg.lr * cfg.trunk_lr_factor, "base": cfg.trunk_lr_factor},
            {"params": decay, "lr": cfg.lr, "base": 1.0},
            {"params": no_decay, "lr": cfg.lr, "base": 1.0, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )


def train_step(
    model: ProductDetector,
    pixels: torch.Tensor,
    boxes: list[torch.Tensor],
    ignores: list[torch.Tensor],
    autocast: torch.dtype | None,
) -> dict[str, torch.Tensor]:
    with torch.autocast(pixels.device.type, dtype=autocast, enabled=autocast is not None):
        features, out = model.pyramid_outputs(pixels)
    points = pyramid_points(
        [(int(f.shape[-2]), int(f.shape[-1])) for f in features], model.cfg.strides, pixels.device
    )
    logits = torch.cat([out["cls_logits"], out["bbox_ctrness"]], dim=2).float()
    return fcos_losses(
        logits,
        out["bbox_regression"].float(),
        points,
        boxes,
        ignores,
        model.cfg.center_sampling_radius,
    )


def train_detector(cfg: DetectorTrainConfig) -> dict[str, Any]:
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    amp = device.type == "cuda"  # fp16 needs the gradient scaler; bf16 does not
    autocast = autocast_dtype(device, cfg.precision)
    preprocess = DetectorPreprocess(long_side=cfg.long_side)
    model_cfg = DetectorConfig(fpn_channels=cfg.fpn_channels, head_convs=cfg.head_convs)
    model = ProductDetector(model_cfg, pretrained=True).to(device)
    channels_last = autocast is not None
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    state_path = work / "state.pt"
    step, history, wall = 0, [], 0.0
    if cfg.resume and state_path.exists():
        state = load_state(state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step, history, wall = int(state["step"]), list(state["history"]), float(state["wall"])
        print(f"resuming {work} at step {step}")
    (work / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    records = [r for folder in iter_folders(cfg.data) for r in read_folder(folder)]
    val_records = read_folder(cfg.val)[: cfg.val_images] if cfg.val else []
    dataset = ShelfCrops(
        records, preprocess, cfg.crop, (cfg.scale_min, cfg.scale_max), seed=cfg.seed
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=StepBatches(len(records), cfg.batch_size, step, cfg.steps, cfg.seed),
        collate_fn=collate,
        num_workers=cfg.workers,
        persistent_workers=False,
    )

    def save(final: bool = False) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "step": step,
            "history": history,
            "wall": wall + time.monotonic() - started,
        }
        save_state(state_path, state)
        save_detector(work / "detector.pt", model, preprocess, history, asdict(cfg))

    stop_requested: list[int] = []

    def request_stop(signum: int, frame: object) -> None:
        stop_requested.append(signum)  # saved and stopped at the end of the current step

    previous = signal.signal(signal.SIGTERM, request_stop)
    started = time.monotonic()
    last_save = started
    running: dict[str, float] = {}
    model.train()
    freeze_batchnorm(model)
    bar = tqdm(total=cfg.steps, initial=step, desc="train-detector", unit="step")
    for pixels, boxes, ignores in loader:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * group["base"] * lr_factor(step, cfg)
        pixels = pixels.to(device, non_blocking=True)
        if channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        boxes = [b.to(device) for b in boxes]
        ignores = [i.to(device) for i in ignores]
        losses = train_step(model, pixels, boxes, ignores, autocast)
        loss = torch.stack(list(losses.values())).sum()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        for k, v in losses.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        running["n"] = running.get("n", 0.0) + 1
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row: dict[str, Any] = {"step": step, "wall": wall + time.monotonic() - started}
            row.update({k: v / running["n"] for k, v in running.items() if k != "n"})
            running = {}
            if val_records:
                model.eval()
                row.update(evaluate_rendered(model, val_records, preprocess, device))
                model.train()
                freeze_batchnorm(model)
            history.append(row)
            (work / "metrics.jsonl").open("a").write(json.dumps(row) + "\n")
            plot_curves(history, work / "curves.png")
            bar.write(
                json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
            )
        if cfg.snapshot_every and step % cfg.snapshot_every == 0:
            save_detector(work / f"detector-step{step}.pt", model, preprocess, history, asdict(cfg))
        if time.monotonic() - last_save > cfg.save_minutes * 60 or step == cfg.steps:
            save()
            last_save = time.monotonic()
        if stop_requested:
            save()
            bar.write(f"stopped by signal {stop_requested[0]} at step {step}; state saved")
            break
    bar.close()
    signal.signal(signal.SIGTERM, previous)
    if step >= cfg.steps and not (work / "detector.pt").exists():
        save()
    return {"steps": step, "history": history, "work_dir": str(work)}
