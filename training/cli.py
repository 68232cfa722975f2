"""`retailklip train` / `retailklip eval` (also `python -m training train|eval`), and the
detector's commands (training/detector/cli.py)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from app.encoder.backbones import POOLS
from app.encoder.preprocess import RESIZE_MODES
from app.encoder.views import VIEWS, parse_views
from training.loop import TrainConfig

HELP = {
    "data": "training images: a folder per class, a CSV manifest (path,label), "
    "or grocery:ROOT:SPLIT[:HALF]",
    "val": "validation images (same forms); leave-one-out 1-NN top-1 is logged per epoch",
    "out": "where the encoder checkpoint (.safetensors) is written",
    "model": "start from: efficientnet-lite0, a RetailKLIP checkpoint, or an OpenCLIP NAME:TAG",
    "work_dir": "resumable state, metrics.jsonl and training_curve.png go here",
    "export_sizes": "comma-separated candidate serving image sizes; the best on --val is exported",
    "margin": "ArcFace angular margin in degrees",
    "resize_mode": "serving framing written into the checkpoint: crop (centre crop) or pad "
    "(pad to a square first, keeping the whole product); training uses it too",
    "pool": "global pooling of a timm tower: avg or gem (generalised mean, p=3)",
    "flip": "serve with a mirrored test-time view averaged in (twice the encoder work)",
    "reference_views": "degraded views stored per reference image by the service, "
    "comma-separated (thumb48,thumb80,blur,jpeg25,dark) or empty",
    "augment": "basic (crop, flip, colour) or shelf (also downscale, blur, JPEG, perspective, "
    "glare, occlusion: the catalogue-to-shelf gap)",
    "anchors": "extra images of the training classes, e.g. catalogue shots "
    "(grocery:ROOT:iconic); same forms as --data",
    "anchor_repeat": "how many times each anchor image counts in its class's pool",
    "interpolate": "WiSE-FT: export (1-a)*starting + a*finetuned weights (1 = finetuned only)",
    "image_size": "training crop size in pixels (also the default serving size)",
    "epochs": "passes over the data (or of --steps-per-epoch steps)",
    "steps_per_epoch": "batches per epoch; 0 = one pass over the data",
    "batch_size": "images per batch (per process under torchrun)",
    "per_class": "images of one class in a batch (m of the m-per-class sampler)",
    "lr": "learning rate of the tower's top layers; lower layers get lr * layer_decay^depth",
    "head_lr": "learning rate of the ArcFace class centres",
    "layer_decay": "layer-wise learning-rate decay factor (RetailKLIP: 0.6-0.8)",
    "weight_decay": "AdamW weight decay (not applied to biases, norms or class centres)",
    "warmup_epochs": "linear warm-up length in epochs, then cosine decay",
    "scale": "ArcFace logit scale s",
    "clip_grad": "gradient norm clipping threshold",
    "init_centres": "start each class centre at its class's mean embedding",
    "freeze_bn": "keep pretrained BatchNorm statistics (small class-balanced batches)",
    "seed": "random seed (sampler, augmentation, centres)",
    "workers": "DataLoader worker processes",
    "device": "auto, cpu or cuda (AMP and channels_last on cuda)",
    "threads": "torch CPU threads; 0 = torch's default",
    "resume": "continue from --work-dir's train_state.pt when present",
}


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retailklip train", description="Finetune an image tower."
    )
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        required = f.name in ("data", "out")
        if f.type == "bool":
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=HELP[f.name],
            )
        elif f.name == "export_sizes":
            parser.add_argument(flag, default="", help=HELP[f.name])
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            default = None if required else f.default
            parser.add_argument(
                flag, type=kind, default=default, required=required, help=HELP[f.name]
            )
    return parser


def _eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retailklip eval", description="Nearest-neighbour accuracy of a gallery/query split."
    )
    parser.add_argument("--gallery", required=True, help="reference images (same forms as --data)")
    parser.add_argument("--query", required=True, help="query images with their true labels")
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        help="model to evaluate, repeatable (e.g. efficientnet-lite0 and a checkpoint)",
    )
    parser.add_argument("--out", default="runs/eval", help="per-class CSVs and summary.json")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--worst", type=int, default=5, help="worst classes to print per model")
    # Pipeline overrides: try a serving pipeline on a model without writing a checkpoint.
    parser.add_argument("--resize", choices=RESIZE_MODES, help="override: crop or pad to square")
    parser.add_argument("--pool", choices=POOLS, help="override: pooling of a timm tower")
    parser.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, help="override: mirror test-time view"
    )
    parser.add_argument(
        "--reference-views",
        help=f"override: degraded views per gallery image, comma-separated from {sorted(VIEWS)}"
        " or none",
    )
    return parser


def run_train(argv: list[str]) -> int:
    args = vars(_train_parser().parse_args(argv))
    args["export_sizes"] = tuple(int(s) for s in str(args["export_sizes"]).split(",") if s.strip())
    summary = TrainConfig(**args)
    from training.loop import train

    result = train(summary)
    if "export_image_size" in result:
        print(
            f"wrote {args['out']} (serving image size {result['export_image_size']}, "
            f"{result['wall_seconds']:.0f} s)"
        )
    return 0


def run_eval(argv: list[str]) -> int:
    args = _eval_parser().parse_args(argv)
    from app.encoder.torch_encoder import load_encoder, override_pipeline
    from training.data import read_spec
    from training.evaluate import evaluate_model, write_per_class_csv
    from training.plots import plot_per_class

    gallery, queries = read_spec(args.gallery), read_spec(args.query)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for i, model in enumerate(args.model):
        encoder = override_pipeline(
            load_encoder(model, args.device),
            resize_mode=args.resize,
            pool=args.pool,
            flip=args.flip,
            reference_views=(
                None if args.reference_views is None else parse_views(args.reference_views)
            ),
        )
        metrics = evaluate_model(encoder, gallery, queries, args.batch_size)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).stem)[:40]
        write_per_class_csv(out / f"per_class_{i}_{slug}.csv", metrics)
        plot_per_class(
            [(c.name, c.top1) for c in metrics.per_class],
            out / f"per_class_{i}_{slug}.png",
            f"{encoder.model_id}: top-1 {metrics.top1:.1%}",
        )
        results[model] = {"model_id": encoder.model_id, **metrics.summary()}
        worst = sorted(metrics.per_class, key=lambda c: (c.top1, c.name))[: args.worst]
        results[model]["worst"] = [(c.name, round(c.top1, 3)) for c in worst]
    print(f"gallery {len(gallery)} images, queries {len(queries)} images")
    print("| model | top-1 | top-5 | mean per-class top-1 |\n| --- | --- | --- | --- |")
    for model, r in results.items():
        print(f"| {model} | {r['top1']:.1%} | {r['top5']:.1%} | {r['mean_per_class']:.1%} |")
    for model, r in results.items():
        print(f"worst classes, {model}: " + ", ".join(f"{n} {a:.0%}" for n, a in r["worst"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    return 0


DETECTOR_COMMANDS = ("render-shelves", "train-detector", "eval-detector", "export-detector")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DETECTOR_COMMANDS:
        from training.detector import cli as detector_cli

        run = {
            "render-shelves": detector_cli.run_render,
            "train-detector": detector_cli.run_train,
            "eval-detector": detector_cli.run_eval,
            "export-detector": detector_cli.run_export,
        }[argv[0]]
        return run(argv[1:])
    if not argv or argv[0] not in ("train", "eval"):
        commands = ",".join(("train", "eval", *DETECTOR_COMMANDS))
        print(f"usage: retailklip {{{commands}}} ... (see --help of each)", file=sys.stderr)
        return 2
    return run_train(argv[1:]) if argv[0] == "train" else run_eval(argv[1:])
