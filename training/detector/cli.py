"""`retailklip render-shelves`, `retailklip train-detector`, `retailklip eval-detector`."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from training.detector.loop import DetectorTrainConfig

TRAIN_HELP = {
    "data": "rendered shelf folders (render-shelves --out), comma-separated",
    "work_dir": "state.pt (resumable), detector.pt, metrics.jsonl and curves.png go here",
    "val": "a rendered folder for validation (not one of --data)",
    "steps": "optimiser steps in all",
    "batch_size": "crops per step",
    "crop": "square training crop in pixels (at the serving scale)",
    "scale_min": "smallest random rescale of a rendered photo before cropping",
    "scale_max": "largest random rescale",
    "lr": "peak learning rate (head and pyramid); warm-up then cosine",
    "trunk_lr_factor": "the trunk's learning rate as a share of --lr",
    "weight_decay": "AdamW weight decay (not on biases and norms)",
    "warmup_steps": "linear warm-up length",
    "clip_grad": "gradient norm clipping threshold",
    "fpn_channels": "channels of the feature pyramid and the head",
    "head_convs": "3x3 convolutions in each head branch",
    "long_side": "serving input: long side of the photo in pixels",
    "seed": "random seed (weights of the head, batches, crops)",
    "eval_every": "steps between validation passes and curve updates",
    "val_images": "rendered validation photos used",
    "save_minutes": "minutes between resumable state saves",
    "snapshot_every": "keep a copy of the weights every N steps (0: none)",
    "workers": "DataLoader worker processes",
    "threads": "torch CPU threads; 0 = torch's default",
    "device": "auto, cpu or cuda",
    "precision": "auto (fp16 autocast on CUDA, bf16 on a CPU with AVX512-BF16), bf16 or fp32",
    "resume": "continue from --work-dir's state.pt when present",
}


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retailklip train-detector",
        description="Train the one-class product detector on rendered shelves.",
    )
    for f in fields(DetectorTrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=TRAIN_HELP[f.name],
            )
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        required = f.name in ("data", "work_dir")
        parser.add_argument(
            flag,
            type=kind,
            default=None if required else f.default,
            required=required,
            help=TRAIN_HELP[f.name],
        )
    return parser


def render_parser() -> argparse.ArgumentParser:
    from training.shelves.render import RenderConfig

    d = RenderConfig()
    parser = argparse.ArgumentParser(
        prog="retailklip render-shelves",
        description="Render synthetic shelf photos with exact boxes from the Grocery Store set.",
    )
    parser.add_argument("--grocery", default="../shared/data/grocery-store", help="its root")
    parser.add_argument("--out", help="folder for NNNNNN.jpg + NNNNNN.json (resumable)")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--photos", type=int, default=1600, help="in-store photos sampled as faces and distractors"
    )
    parser.add_argument("--preview", help="write a PNG grid of rendered photos with their boxes")
    parser.add_argument("--preview-count", type=int, default=12)
    parser.add_argument("--long-side", type=int, default=d.long_side)
    parser.add_argument(
        "--product-px",
        default=",".join(str(int(v)) for v in d.product_px),
        help="typical product height range per photo, in working pixels: MIN,MAX",
    )
    parser.add_argument(
        "--instore",
        action=argparse.BooleanOptionalAction,
        default=d.instore,
        help="in-store photo crops as product faces (else catalogue cut-outs only)",
    )
    parser.add_argument(
        "--glass",
        action=argparse.BooleanOptionalAction,
        default=d.glass,
        help="fridge doors with glass, frames, reflections and glare",
    )
    parser.add_argument("--fridge-share", type=float, default=d.fridge_share)
    parser.add_argument("--perspective", type=float, default=d.perspective)
    parser.add_argument("--back-rows", action=argparse.BooleanOptionalAction, default=d.back_rows)
    parser.add_argument(
        "--distractors", action=argparse.BooleanOptionalAction, default=d.distractors
    )
    return parser


def run_render(argv: list[str]) -> int:
    from training.shelves.dataset import render_folder
    from training.shelves.preview import write_preview
    from training.shelves.render import RenderConfig

    args = render_parser().parse_args(argv)
    lo, hi = (float(v) for v in args.product_px.split(","))
    cfg = RenderConfig(
        long_side=args.long_side,
        product_px=(lo, hi),
        instore=args.instore,
        glass=args.glass,
        fridge_share=args.fridge_share,
        perspective=args.perspective,
        back_rows=args.back_rows,
        distractors=args.distractors,
    )
    if not args.out and not args.preview:
        print("error: give --out, --preview or both")
        return 2
    if args.preview:
        write_preview(
            args.grocery, Path(args.preview), cfg, args.seed, args.preview_count, args.photos
        )
        print(f"wrote {args.preview}")
    if args.out:
        render_folder(args.grocery, args.out, args.count, args.seed, cfg, args.workers, args.photos)
        print(f"rendered {args.count} photos in {args.out}")
    return 0


def run_train(argv: list[str]) -> int:
    from training.detector.loop import train_detector

    args = vars(train_parser().parse_args(argv))
    result = train_detector(DetectorTrainConfig(**args))
    print(f"trained {result['steps']} steps: {result['work_dir']}/detector.pt")
    return 0


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retailklip export-detector",
        description="Write a detector checkpoint's ONNX graph, checked against PyTorch.",
    )
    parser.add_argument("--checkpoint", required=True, help="detector.pt from train-detector")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument(
        "--threshold",
        type=float,
        help="default score threshold stored in the graph (default: the F1-best one on the "
        "checkpoint's last rendered validation pass)",
    )
    parser.add_argument("--model-id", help="default: retailklip-detector-<checkpoint stem>")
    return parser


def run_export(argv: list[str]) -> int:
    from training.detector.checkpoint import load_detector
    from training.detector.export import export_onnx

    args = export_parser().parse_args(argv)
    model, preprocess, payload = load_detector(args.checkpoint)
    history = payload.get("history") or [{}]
    threshold = args.threshold
    if threshold is None:
        threshold = float(history[-1].get("val_threshold", 0.3))
    model_id = args.model_id or f"retailklip-detector-{Path(args.checkpoint).stem}"
    steps = int(history[-1].get("step", 0))
    info = {"trained_steps": steps, "train_config": payload.get("train_config", {})}
    export_onnx(model, preprocess, Path(args.out), threshold, model_id, info)
    print(f"wrote {args.out} ({model_id}, threshold {threshold:.3f}), checked against PyTorch")
    return 0


def run_eval(argv: list[str]) -> int:
    from training.detector.eval_cli import run_eval_detector

    return run_eval_detector(argv)
