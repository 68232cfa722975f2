"""The RetailKLIP training loop: ArcFace + layer-wise LR decay + class-balanced batches."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from app.encoder.backbones import TowerConfig, set_timm_pool
from app.encoder.checkpoint import save_checkpoint
from app.encoder.preprocess import PreprocessConfig, eval_transform
from app.encoder.runtime import Encoder
from app.encoder.views import parse_views
from training.arcface import RetailKLIPModel, init_centres, make_arcface
from training.augment import make_train_transform
from training.data import ImageDataset, load_image, read_spec
from training.evaluate import leave_one_out_top1
from training.lr_decay import layer_decay_groups
from training.plots import plot_history
from training.plumbing import init_distributed, seed_everything, start_tower, warmup_cosine
from training.sampler import MPerClassBatchSampler
from training.state import load_state, restore_rng, rng_state, save_state


@dataclass
class TrainConfig:
    data: str
    out: str
    model: str = "efficientnet-lite0"
    val: str | None = None
    work_dir: str = "runs/train"
    image_size: int = 160
    export_sizes: tuple[int, ...] = ()  # candidate serving sizes; best validation 1-NN wins
    epochs: int = 10
    steps_per_epoch: int = 0  # 0: one pass over the data per epoch
    batch_size: int = 32
    per_class: int = 4  # m: images per class in a batch
    lr: float = 2e-4
    head_lr: float = 2e-3
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    margin: float = 20.0  # degrees, as in pytorch-metric-learning
    scale: float = 30.0
    clip_grad: float = 1.0
    init_centres: bool = True
    freeze_bn: bool = True  # keep pretrained BatchNorm statistics (small class-balanced batches)
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    threads: int = 0  # 0: leave torch's default
    resume: bool = True
    # The serving pipeline, trained with and written into the checkpoint.
    resize_mode: str = "crop"  # crop | pad (to a square, keeping the whole product)
    pool: str = "avg"  # avg | gem (timm towers)
    flip: bool = False  # mirror test-time view at serving
    reference_views: str = ""  # degraded views stored per reference, e.g. thumb48,blur
    augment: str = "basic"  # basic | shelf (imitate shelf photos: scale, blur, JPEG, glare, ...)
    anchors: str | None = None  # extra images of the same classes, e.g. catalogue shots
    anchor_repeat: int = 4  # each anchor image counts this many times in the class's pool
    interpolate: float = 1.0  # WiSE-FT: export (1-a)*start + a*finetuned weights; 1 = finetuned


def _val_top1(encoder: Encoder, images: list, targets: list[int], size: int) -> float:
    """Leave-one-out 1-NN on the validation photos, through the serving transform at `size`."""
    encoder.preprocess = replace(encoder.preprocess, image_size=size)
    emb = np.concatenate([encoder.embed(images[i : i + 64]) for i in range(0, len(images), 64)])
    return leave_one_out_top1(emb, targets)


@torch.no_grad()
def _centre_init(model: RetailKLIPModel, data: ImageDataset, pre: PreprocessConfig, dev) -> int:
    """Embed the training images (serving transform) and set each centre to its class mean."""
    transform = eval_transform(pre)
    model.tower.eval()
    rows = []
    for start in range(0, len(data), 64):
        idx = range(start, min(len(data), start + 64))
        images = [data.cache[i] if data.cache else load_image(data.samples[i].path) for i in idx]
        batch = torch.stack([transform(image) for image in images]).to(dev)
        rows.append(model.tower(batch).float().cpu())
    model.tower.train()
    return init_centres(model.loss, torch.cat(rows), torch.tensor(data.targets))


def with_pipeline(
    tower: torch.nn.Module, tower_cfg: TowerConfig, pre: PreprocessConfig, cfg: TrainConfig
) -> tuple[torch.nn.Module, TowerConfig, PreprocessConfig]:
    """Apply the configured serving pipeline to the starting tower, before any step."""
    if tower_cfg.is_timm:
        set_timm_pool(tower, cfg.pool)
        tower_cfg = replace(tower_cfg, pool=cfg.pool)
    elif cfg.pool != "avg":
        raise ValueError("--pool applies to timm towers only")
    pre = replace(
        pre,
        resize_mode=cfg.resize_mode,
        flip=cfg.flip,
        reference_views=parse_views(cfg.reference_views),
    )
    return tower, tower_cfg, pre


@torch.no_grad()
def interpolate_weights(tower: torch.nn.Module, start: torch.nn.Module, alpha: float) -> None:
    """WiSE-FT (Wortsman et al. 2022): move the finetuned weights back towards the starting ones.

    Floating-point tensors (weights and BatchNorm statistics) become (1-a)*start + a*finetuned;
    integer buffers such as BatchNorm's step counters keep the finetuned value.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"interpolate must be in [0, 1], not {alpha}")
    reference = start.state_dict()
    for name, value in tower.state_dict().items():
        if value.is_floating_point():
            value.copy_(torch.lerp(reference[name].to(value), value, alpha))


def _train_mode(model: torch.nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        # Batches of 8 classes x 4 augmented crops would drag the running statistics away from
        # what the eval transform produces; the affine BN weights still train.
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def train(cfg: TrainConfig) -> dict:
    """Finetune, export the encoder to `cfg.out`, return the run summary (rank 0's view)."""
    started = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    world, device = init_distributed(cfg.device)
    seed_everything(cfg.seed + world.rank)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    tower, tower_cfg, pre = start_tower(cfg.model, cfg.image_size)
    tower, tower_cfg, pre = with_pipeline(tower, tower_cfg, pre, cfg)
    samples = read_spec(cfg.data)
    if cfg.anchors:
        samples += read_spec(cfg.anchors) * cfg.anchor_repeat
    # Cache photos a little larger than the crop, so random crops keep their detail.
    data = ImageDataset(
        samples, make_train_transform(pre, cfg.augment), cache_side=int(pre.image_size * 1.4)
    )
    loss = make_arcface(len(data.class_names), tower_cfg.embed_dim, cfg.margin, cfg.scale)
    model = RetailKLIPModel(tower, loss).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    sampler = MPerClassBatchSampler(
        data.targets,
        cfg.batch_size,
        cfg.per_class,
        cfg.seed,
        world.rank,
        world.world_size,
        steps=cfg.steps_per_epoch or None,
    )
    loader = DataLoader(data, batch_sampler=sampler, num_workers=cfg.workers, pin_memory=cuda)
    steps = len(sampler)
    groups = layer_decay_groups(model.tower, cfg.lr, cfg.layer_decay, cfg.weight_decay)
    # The class centres are parameters too: the optimiser must see them (no weight decay).
    groups.append(
        {"params": [model.loss.W], "lr": cfg.head_lr, "weight_decay": 0.0, "name": "arcface_W"}
    )
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(int(cfg.warmup_epochs * steps), cfg.epochs * steps)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    state_path, history, first_epoch = work / "train_state.pt", [], 0
    if cfg.resume and state_path.is_file():
        state = load_state(state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        restore_rng(state["rng"])
        history, first_epoch = list(state["history"]), int(state["epoch"]) + 1
    else:
        if world.main:
            (work / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run starts a fresh log
        if cfg.init_centres:
            _centre_init(model, data, pre, device)
    ddp = DistributedDataParallel(model) if world.enabled else model
    val_samples = read_spec(cfg.val) if cfg.val and world.main else []
    val_images = [load_image(s.path) for s in val_samples]
    val_names = sorted({s.label for s in val_samples})
    val_targets = [val_names.index(s.label) for s in val_samples]
    encoder = Encoder(model.tower, pre, "training", tower_cfg.embed_dim, device)
    for epoch in range(first_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        _train_mode(model, cfg.freeze_bn)
        tick, losses = time.time(), []
        bar = tqdm(
            loader, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not world.main
        )
        for step, (images, labels) in enumerate(bar):
            if step >= steps:
                break
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
                value = ddp(images, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(value).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            losses.append(float(value.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        row = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "steps": len(losses),
            "seconds": round(time.time() - tick, 1),
            "images_per_s": round(
                len(losses) * cfg.batch_size * world.world_size / (time.time() - tick), 2
            ),
            "lr": optimizer.param_groups[-2]["lr"],
            "world_size": world.world_size,
        }
        if world.main:
            model.eval()
            row["val_top1"] = (
                _val_top1(encoder, val_images, val_targets, pre.image_size) if val_images else None
            )
            history.append(row)
            with open(work / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(row) + "\n")
            save_state(
                state_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "rng": rng_state(),
                    "epoch": epoch,
                    "history": history,
                },
            )
            plot_history(history, work / "training_curve.png", f"RetailKLIP {cfg.model}")
            tqdm.write(json.dumps(row))
        if world.enabled:
            torch.distributed.barrier()
    summary = {"history": history, "world_size": world.world_size}
    if world.main:
        model.eval()
        if cfg.interpolate != 1.0:
            # Before choosing the export size, so the validation numbers describe the export.
            start = with_pipeline(*start_tower(cfg.model, cfg.image_size), cfg)[0]
            interpolate_weights(model.tower, start, cfg.interpolate)
        sizes = sorted(set(cfg.export_sizes) | {pre.image_size})
        by_size = (
            {s: _val_top1(encoder, val_images, val_targets, s) for s in sizes} if val_images else {}
        )
        best = (
            max(by_size, key=lambda s: (by_size[s], s == pre.image_size))
            if by_size
            else pre.image_size
        )
        export_pre = replace(pre, image_size=best)
        info = {
            "recipe": "RetailKLIP: ArcFace + layer-wise LR decay + m-per-class batches",
            "config": asdict(cfg),
            "classes": data.class_names,
            "train_images": len(data),
            "val_top1_by_size": by_size,
            "history": history,
            "wall_seconds": round(time.time() - started, 1),
            "torch": torch.__version__,
        }
        save_checkpoint(cfg.out, model.tower, tower_cfg, export_pre, info)
        summary.update(
            export_image_size=best, val_top1_by_size=by_size, wall_seconds=info["wall_seconds"]
        )
        (work / "summary.json").write_text(json.dumps(summary, indent=2))
    if world.enabled:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary
