"""`retailklip eval-detector`: the dev-set table for detector graphs or checkpoints.

A `.onnx` graph is served as the service serves it (`app.detector.ProductDetector`); a `.pt`
checkpoint from `train-detector` is first exported to a temporary graph (with the score
threshold chosen on its rendered validation shelves), so every row is timed in ONNX Runtime.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from app.detector.product_detector import ProductDetector
from training.detector.evaluate import (
    HEADER,
    BoxedPhoto,
    DetectorScores,
    evaluate_method,
    read_voc_folder,
)


def eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retailklip eval-detector",
        description="Recall at IoU 0.5/0.7, AP50, boxes and ms per photo on boxed shelf photos.",
    )
    parser.add_argument(
        "--photos",
        default="../shared/data/cornershop-dev/photos",
        help="a folder of NAME.jpg + NAME.xml (Pascal VOC)",
    )
    parser.add_argument(
        "--model", action="append", required=True, help="a detector .onnx or .pt (repeatable)"
    )
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--long-side", type=int, help="override the input's long side (pixels)")
    parser.add_argument("--threshold", type=float, help="override the operating score threshold")
    parser.add_argument("--draw", help="write PNGs with annotated (red) and detected (green) boxes")
    parser.add_argument("--json", help="write the table as JSON")
    return parser


def graph_for(model: str, workdir: Path) -> Path:
    if not model.endswith(".pt"):
        return Path(model)
    from training.detector.checkpoint import load_detector
    from training.detector.export import export_onnx

    torch_model, preprocess, payload = load_detector(model)
    history = payload.get("history") or [{}]
    threshold = float(history[-1].get("val_threshold", 0.3))
    out = workdir / (Path(model).stem + ".onnx")
    return export_onnx(torch_model, preprocess, out, threshold, Path(model).stem)


def detector_method(
    detector: ProductDetector,
) -> tuple[object, float]:
    def method(path: Path, floor: float) -> tuple[np.ndarray, np.ndarray]:
        with Image.open(path) as image:
            found = detector.detect(image, score_threshold=floor, max_boxes=1000)
        boxes = np.asarray([d.box for d in found], np.float32).reshape(-1, 4)
        return boxes, np.asarray([d.score for d in found], np.float32)

    return method, detector.metadata.score_threshold


def draw_photos(
    scores: DetectorScores, photos: list[BoxedPhoto], threshold: float, out: Path
) -> Path:
    """One PNG per method: every photo at 1/6 scale, annotated boxes red, detections green."""
    tiles = []
    for photo, result in zip(photos, scores.per_photo, strict=True):
        with Image.open(photo.path) as opened:
            full_width = opened.width
            opened.draft("RGB", (opened.width // 4, opened.height // 4))
            small = opened.convert("RGB")
        f = 504 / small.width if small.width < small.height else 672 / small.width
        scale = small.width * f / full_width
        image = small.resize((round(small.width * f), round(small.height * f)))
        draw = ImageDraw.Draw(image)
        for box in photo.boxes:
            draw.rectangle((box * scale).tolist(), outline=(255, 40, 40), width=2)
        for box, score in zip(result.boxes, result.scores, strict=True):
            if score >= threshold:
                draw.rectangle((box * scale).tolist(), outline=(40, 255, 40), width=1)
        tiles.append(image)
    columns = 5
    cell_w, cell_h = max(t.width for t in tiles), max(t.height for t in tiles)
    rows = (len(tiles) + columns - 1) // columns
    grid = Image.new("RGB", (columns * cell_w, rows * cell_h), (20, 20, 20))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % columns) * cell_w, (i // columns) * cell_h))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{scores.name.replace('/', '_')}.png"
    grid.save(path)
    return path


def run_eval_detector(argv: list[str]) -> int:
    args = eval_parser().parse_args(argv)
    photos = read_voc_folder(args.photos)
    if not photos:
        print(f"error: no NAME.jpg + NAME.xml pairs under {args.photos}")
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.model:
            detector = ProductDetector.load(graph_for(model, Path(tmp)), threads=args.threads)
            if args.long_side:
                meta = detector.metadata
                detector.metadata = dataclasses.replace(
                    meta, preprocess=dataclasses.replace(meta.preprocess, long_side=args.long_side)
                )
            method, threshold = detector_method(detector)
            if args.threshold is not None:
                threshold = args.threshold
            name = Path(model).stem + (f"@{args.long_side}" if args.long_side else "")
            scores = evaluate_method(name, method, photos, threshold)  # type: ignore[arg-type]
            rows.append((scores, threshold))
            if args.draw:
                print(f"drew {draw_photos(scores, photos, threshold, Path(args.draw))}")
    truth = sum(len(p.boxes) for p in photos)
    print(f"{len(photos)} photos, {truth} boxes; {args.threads} ONNX Runtime threads")
    print(HEADER)
    for scores, _ in rows:
        print(scores.row())
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "name": s.name,
                        "threshold": t,
                        "recall50": s.recall50,
                        "recall70": s.recall70,
                        "ap50": s.ap50,
                        "recall50_floor": s.recall50_floor,
                        "boxes_per_photo": s.boxes_per_photo,
                        "ms_per_photo": s.ms_per_photo,
                    }
                    for s, t in rows
                ],
                indent=2,
            )
        )
    return 0
