"""The RetailKLIP training loop: ArcFace + layer-wise LR decay + class-balanced batches."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from app.encoder.backbones import TowerConfig, set_timm_pool
from app.encoder.checkpoint import save_checkpoint
from app.encoder.preprocess import PreprocessConfig, eval_transform
from app.encoder.torch_encoder import Encoder
from app.encoder.views import parse_views
from training.arcface import RetailKLIPModel, init_centres, make_arcface
from training.augment import make_train_transform
from training.data import ImageDataset, load_image, read_spec
from training.distributed import Dist, init_distributed
from training.evaluate import leave_one_out_top1
from training.lr_decay import layer_decay_groups
from training.plots import plot_history
from training.sampler import MPerClassBatchSampler
from training.schedule import HEAD_GROUP, get_learning_rate, warmup_cosine
from training.state import load_state, restore_rng, rng_state, save_state, seed_everything
from training.towers import start_tower


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


@dataclass
class TrainRun:
    """What one run holds between its steps (build -> resume -> epochs -> export)."""

    cfg: TrainConfig
    world: Dist
    device: torch.device
    work: Path
    model: RetailKLIPModel
    tower_cfg: TowerConfig
    pre: PreprocessConfig
    data: ImageDataset
    sampler: MPerClassBatchSampler
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    encoder: Encoder  # the serving path over the live tower, for validation
    val: ValidationSet
    history: list[dict] = field(default_factory=list)
    first_epoch: int = 0

    @property
    def state_path(self) -> Path:
        return self.work / "train_state.pt"

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


@dataclass(frozen=True)
class ValidationSet:
    images: list
    targets: list[int]

    @classmethod
    def read(cls, spec: str | None) -> ValidationSet:
        samples = read_spec(spec) if spec else []
        names = sorted({s.label for s in samples})
        return cls([load_image(s.path) for s in samples], [names.index(s.label) for s in samples])


def build(cfg: TrainConfig) -> TrainRun:
    """Devices, data, model, sampler, optimiser and schedule: everything before the first step."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    world, device = init_distributed(cfg.device)
    seed_everything(cfg.seed + world.rank)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    tower, tower_cfg, pre = with_pipeline(*start_tower(cfg.model, cfg.image_size), cfg)
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
        {"params": [model.loss.W], "lr": cfg.head_lr, "weight_decay": 0.0, "name": HEAD_GROUP}
    )
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(int(cfg.warmup_epochs * steps), cfg.epochs * steps)
    )
    return TrainRun(
        cfg=cfg,
        world=world,
        device=device,
        work=work,
        model=model,
        tower_cfg=tower_cfg,
        pre=pre,
        data=data,
        sampler=sampler,
        loader=loader,
        optimizer=optimizer,
        schedule=schedule,
        scaler=torch.amp.GradScaler("cuda", enabled=cuda),
        encoder=Encoder(model.tower, pre, "training", tower_cfg.embed_dim, device),
        val=ValidationSet.read(cfg.val if world.main else None),
    )


def resume(run: TrainRun) -> None:
    """Continue from the last complete epoch's state, or start fresh (centres from the data)."""
    if run.cfg.resume and run.state_path.is_file():
        state = load_state(run.state_path)
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.schedule.load_state_dict(state["schedule"])
        restore_rng(state["rng"])
        run.history, run.first_epoch = list(state["history"]), int(state["epoch"]) + 1
        return
    if run.world.main:
        (run.work / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run starts a fresh log
    if run.cfg.init_centres:
        _centre_init(run.model, run.data, run.pre, run.device)


def train_one_epoch(run: TrainRun, step_model: torch.nn.Module, epoch: int) -> dict:
    """One pass of the sampler; returns the epoch's log row (loss, speed, learning rate)."""
    cfg, steps = run.cfg, len(run.sampler)
    run.sampler.set_epoch(epoch)
    _train_mode(run.model, cfg.freeze_bn)
    tick, losses = time.time(), []
    bar = tqdm(
        run.loader, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not run.world.main
    )
    for step, (images, labels) in enumerate(bar):
        if step >= steps:
            break
        images, labels = images.to(run.device, non_blocking=True), labels.to(run.device)
        if run.cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.cuda):
            value = step_model(images, labels)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(value).backward()
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip_grad)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.schedule.step()
        losses.append(float(value.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    seconds = time.time() - tick
    return {
        "epoch": epoch + 1,
        "loss": float(np.mean(losses)),
        "steps": len(losses),
        "seconds": round(seconds, 1),
        "images_per_s": round(len(losses) * cfg.batch_size * run.world.world_size / seconds, 2),
        "lr": get_learning_rate(run.optimizer),
        "world_size": run.world.world_size,
    }


def evaluate(run: TrainRun, image_size: int | None = None) -> float | None:
    """Validation top-1 through the serving transform (None without a validation set)."""
    if not run.val.images:
        return None
    run.model.eval()
    return _val_top1(run.encoder, run.val.images, run.val.targets, image_size or run.pre.image_size)


def record_epoch(run: TrainRun, epoch: int, row: dict) -> None:
    """Rank 0: log the row, write the resumable state and the training curve."""
    run.history.append(row)
    with open(run.work / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    save_state(
        run.state_path,
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "schedule": run.schedule.state_dict(),
            "rng": rng_state(),
            "epoch": epoch,
            "history": run.history,
        },
    )
    plot_history(run.history, run.work / "training_curve.png", f"RetailKLIP {run.cfg.model}")
    tqdm.write(json.dumps(row))


def choose_export_size(run: TrainRun) -> tuple[int, dict[int, float]]:
    """The serving image size with the best validation top-1 (ties: the training size)."""
    sizes = sorted(set(run.cfg.export_sizes) | {run.pre.image_size})
    by_size: dict[int, float] = {}
    for size in sizes:
        top1 = evaluate(run, size)
        if top1 is not None:
            by_size[size] = top1
    if not by_size:
        return run.pre.image_size, by_size
    return max(by_size, key=lambda s: (by_size[s], s == run.pre.image_size)), by_size


def export(run: TrainRun, started: float) -> dict:
    """Rank 0: WiSE-FT if asked, pick the serving size, write the checkpoint and summary."""
    cfg = run.cfg
    run.model.eval()
    if cfg.interpolate != 1.0:
        # Before choosing the export size, so the validation numbers describe the export.
        start = with_pipeline(*start_tower(cfg.model, cfg.image_size), cfg)[0]
        interpolate_weights(run.model.tower, start, cfg.interpolate)
    best, by_size = choose_export_size(run)
    info = {
        "recipe": "RetailKLIP: ArcFace + layer-wise LR decay + m-per-class batches",
        "config": asdict(cfg),
        "classes": run.data.class_names,
        "train_images": len(run.data),
        "val_top1_by_size": by_size,
        "history": run.history,
        "wall_seconds": round(time.time() - started, 1),
        "torch": torch.__version__,
    }
    save_checkpoint(
        cfg.out, run.model.tower, run.tower_cfg, replace(run.pre, image_size=best), info
    )
    summary = {
        "history": run.history,
        "world_size": run.world.world_size,
        "export_image_size": best,
        "val_top1_by_size": by_size,
        "wall_seconds": info["wall_seconds"],
    }
    (run.work / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def train(cfg: TrainConfig) -> dict:
    """Finetune, export the encoder to `cfg.out`, return the run summary (rank 0's view)."""
    started = time.time()
    run = build(cfg)
    resume(run)
    step_model = DistributedDataParallel(run.model) if run.world.enabled else run.model
    for epoch in range(run.first_epoch, cfg.epochs):
        row = train_one_epoch(run, step_model, epoch)
        if run.world.main:
            row["val_top1"] = evaluate(run)
            record_epoch(run, epoch, row)
        if run.world.enabled:
            torch.distributed.barrier()
    summary: dict = {"history": run.history, "world_size": run.world.world_size}
    if run.world.main:
        summary = export(run, started)
    if run.world.enabled:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary
