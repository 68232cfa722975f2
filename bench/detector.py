"""Detector bench: each detector graph beside a method that needs no training, on boxed photos.

    python -m bench.detector --model app/models/retailklip-detector-lite0.onnx \
        --model /work/det-runs/a/detector.pt --draw /tmp/detector-bench

Prints the table of docs/DETECTOR.md (recall at IoU 0.5 and 0.7, AP50, boxes and ms per 12 MP
photo on this machine's cores with ONNX Runtime, JPEG decode included). The floor is OpenCV's
selective search (fast mode) on the photo at 640 px: proposals in the order it makes them
(the score is 1 / (1 + rank)), the first `--ss-boxes` kept at the operating point. It needs
`opencv-contrib-python-headless` (the `bench` extra), imported here only.

The photos default to `../shared/data/cornershop-dev` (evaluation and model selection only:
never trained on, never committed; the drawings go outside the repository).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from app.detector.decode import postprocess
from app.detector.preprocess import prepare
from app.detector.product_detector import ProductDetector
from training.detector.eval_cli import detector_method, draw_photos, graph_for
from training.detector.evaluate import HEADER, evaluate_method, read_voc_folder

SS_SIDE = 640


def stage_times(detector: ProductDetector, photos: list[Path]) -> dict[str, float]:
    """Median ms per photo of each stage of `detect`: JPEG decode + resize + normalise,
    the graph, and decoding + NMS in numpy (what putting decoding into the graph would save)."""
    meta = detector.metadata
    times: dict[str, list[float]] = {"prepare": [], "graph": [], "decode+nms": []}
    for path in [photos[0], *photos]:  # the first run warms up and is dropped
        started = time.perf_counter()
        with Image.open(path) as image:
            prepared = prepare(image, meta.preprocess)
        mid = time.perf_counter()
        logits, regression = detector.raw(prepared.pixels[None])
        done = time.perf_counter()
        postprocess(
            logits[0],
            regression[0],
            (prepared.pixels.shape[1], prepared.pixels.shape[2]),
            meta.strides,
            prepared.scale,
            prepared.photo_size,
            meta.score_threshold,
            meta.nms_iou,
            meta.max_boxes,
        )
        end = time.perf_counter()
        for key, value in zip(times, (mid - started, done - mid, end - done), strict=True):
            times[key].append(value)
    return {k: 1000 * float(np.median(v[1:])) for k, v in times.items()}


def selective_search(max_boxes: int):
    import cv2

    cv2.setNumThreads(2)
    segmenter = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()

    def method(path: Path, floor: float) -> tuple[np.ndarray, np.ndarray]:
        with Image.open(path) as image:
            width = image.width
            image.draft("RGB", (SS_SIDE, SS_SIDE))
            small = image.convert("RGB")
        small.thumbnail((SS_SIDE, SS_SIDE), Image.Resampling.BILINEAR)
        segmenter.setBaseImage(np.ascontiguousarray(np.asarray(small)[:, :, ::-1]))
        segmenter.switchToSelectiveSearchFast()
        rects = segmenter.process()[: max(max_boxes, 2000)]
        f = width / small.width
        boxes = np.asarray(
            [[x * f, y * f, (x + w) * f, (y + h) * f] for x, y, w, h in rects], np.float32
        ).reshape(-1, 4)
        scores = 1.0 / (1.0 + np.arange(len(boxes), dtype=np.float32))
        keep = scores >= floor
        return boxes[keep], scores[keep]

    return method


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", default="../shared/data/cornershop-dev/photos")
    parser.add_argument("--model", action="append", default=[], help=".onnx or .pt, repeatable")
    parser.add_argument(
        "--long-side",
        type=int,
        action="append",
        default=[],
        help="also run each model at this input long side (repeatable)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ss-boxes", type=int, default=300, help="selective search proposals kept")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--draw", default="/tmp/detector-bench", help="PNG folder (outside the repo)"
    )
    parser.add_argument("--json", help="write the rows as JSON")
    args = parser.parse_args(argv)
    photos = read_voc_folder(args.photos)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.model:
            detector = ProductDetector.load(graph_for(model, Path(tmp)), threads=args.threads)
            native = detector.metadata.preprocess.long_side
            for side in [native, *[s for s in args.long_side if s != native]]:
                meta = detector.metadata
                detector.metadata = dataclasses.replace(
                    meta, preprocess=dataclasses.replace(meta.preprocess, long_side=side)
                )
                method, threshold = detector_method(detector)
                name = f"{Path(model).stem} @{side}px"
                scores = evaluate_method(name, method, photos, threshold)  # type: ignore[arg-type]
                rows.append((scores, threshold))
                draw_photos(scores, photos, threshold, Path(args.draw))
                stages = stage_times(detector, [p.path for p in photos])
                print(scores.row(), "stages (ms):", stages, flush=True)
    if not args.no_baseline:
        threshold = 1.0 / args.ss_boxes
        name = f"selective search (fast, {SS_SIDE} px, first {args.ss_boxes})"
        scores = evaluate_method(name, selective_search(args.ss_boxes), photos, threshold)
        rows.append((scores, threshold))
        draw_photos(scores, photos, threshold, Path(args.draw))
    truth = sum(len(p.boxes) for p in photos)
    print(f"\n{len(photos)} photos, {truth} boxes; {args.threads} threads; drawings in {args.draw}")
    print(HEADER)
    for scores, _ in rows:
        print(scores.row())
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {k: v for k, v in dataclasses.asdict(s).items() if k != "per_photo"}
                    | {"threshold": t}
                    for s, t in rows
                ],
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
