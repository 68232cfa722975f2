"""The served detector graph: ONNX export of `raw_outputs`, metadata inside, checked against
PyTorch before it is renamed into place.

Input `pixels` (N, 3, H, W) float32 with H and W multiples of the coarsest stride (dynamic);
outputs `logits` (N, P, 2) and `regression` (N, P, 4) as in training/detector/model.py. The
check runs both on the same photos through the same numpy decoding and NMS and requires the
same boxes: each box of one has a box of the other at IoU >= 0.99 with a score within 1e-3
(1 % may differ: near-equal scores can swap places in NMS).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from app.detector.decode import postprocess
from app.detector.preprocess import DetectorPreprocess, prepare
from app.detector.product_detector import (
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAMES,
    ProductDetector,
)
from app.storage.files import atomic_path
from training.detector.inference import NMS_IOU
from training.detector.metrics import iou_matrix
from training.detector.model import ProductDetector as TorchDetector

OPSET = 17
MAX_BOXES = 300


class RawGraph(torch.nn.Module):
    def __init__(self, model: TorchDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.raw_outputs(pixels)


def metadata(
    model: TorchDetector,
    preprocess: DetectorPreprocess,
    score_threshold: float,
    model_id: str,
    info: dict[str, Any],
) -> str:
    return json.dumps(
        {
            "preprocess": preprocess.to_dict(),
            "strides": list(model.cfg.strides),
            "score_threshold": round(float(score_threshold), 4),
            "nms_iou": NMS_IOU,
            "max_boxes": MAX_BOXES,
            "model_id": model_id,
            "architecture": model.cfg.to_dict(),
            **info,
        }
    )


def export_onnx(
    model: TorchDetector,
    preprocess: DetectorPreprocess,
    path: Path,
    score_threshold: float,
    model_id: str,
    info: dict[str, Any] | None = None,
) -> Path:
    import onnx

    model = model.eval().cpu()
    example = torch.zeros(1, 3, 256, 320)
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}.unchecked")
    try:
        with torch.no_grad():
            # eval() on the wrapper too: the exporter restores the wrapper's mode afterwards,
            # and a wrapper left in training mode would switch every BatchNorm to batch stats.
            torch.onnx.export(
                RawGraph(model).eval(),
                (example,),
                str(staged),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT_NAMES[0]: {0: "batch", 1: "points"},
                    OUTPUT_NAMES[1]: {0: "batch", 1: "points"},
                },
                opset_version=OPSET,
                dynamo=False,  # the TorchScript exporter handles timm's "same" padding
            )
        graph = onnx.load(str(staged))
        entry = graph.metadata_props.add()
        entry.key = METADATA_KEY
        entry.value = metadata(model, preprocess, score_threshold, model_id, info or {})
        with atomic_path(staged) as tmp:
            onnx.save(graph, str(tmp))
        # Boxes compared at the operating threshold, the ones the service serves: far below it,
        # hundreds of near-tied boxes on the noise images let 1e-3 differences reorder NMS.
        # The raw outputs are compared everywhere regardless.
        check_against_torch(model, preprocess, staged, threshold=score_threshold)
        with atomic_path(path) as tmp:
            tmp.write_bytes(staged.read_bytes())
    finally:
        staged.unlink(missing_ok=True)
    return path


def check_images(seed: int = 0) -> list[Image.Image]:
    """Photos for the check: textured noise of two shapes (portrait and landscape), so the
    dynamic height and width are both exercised; real photos can be passed as well."""
    rng = np.random.default_rng(seed)
    images = []
    for size in ((600, 800), (900, 500)):
        coarse = rng.integers(0, 255, size=(size[1] // 40, size[0] // 40, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(size, Image.Resampling.NEAREST)
        images.append(image)
    return images


def check_against_torch(
    model: TorchDetector,
    preprocess: DetectorPreprocess,
    graph_path: Path,
    images: list[Image.Image] | None = None,
    threshold: float = 0.05,
) -> int:
    """Same boxes from the graph as from PyTorch; returns how many were compared."""
    detector = ProductDetector.load(graph_path, threads=2)
    model.eval()
    compared = 0
    for image in images or check_images():
        prepared = prepare(image, preprocess)
        with torch.no_grad():
            t_logits, t_reg = model.raw_outputs(torch.from_numpy(prepared.pixels)[None])
        o_logits, o_reg = detector.raw(prepared.pixels[None])
        if not np.allclose(t_logits.numpy(), o_logits, atol=2e-3) or not np.allclose(
            t_reg.numpy(), o_reg, atol=2e-3
        ):
            worst = float(np.abs(t_logits.numpy() - o_logits).max())
            raise ValueError(f"ONNX outputs differ from PyTorch (logits by up to {worst:.4g})")
        hw = (prepared.pixels.shape[1], prepared.pixels.shape[2])
        args = (model.cfg.strides, prepared.scale, prepared.photo_size, threshold, NMS_IOU, 1000)
        t_boxes, t_scores = postprocess(t_logits[0].numpy(), t_reg[0].numpy(), hw, *args)
        o_boxes, o_scores = postprocess(o_logits[0], o_reg[0], hw, *args)
        unmatched = unmatched_boxes(t_boxes, t_scores, o_boxes, o_scores)
        if unmatched > 0.01 * max(len(t_boxes), len(o_boxes)):
            raise ValueError(
                f"ONNX and PyTorch boxes differ: {unmatched} of {len(t_boxes)} unmatched"
            )
        compared += len(t_boxes)
    return compared


def unmatched_boxes(
    a_boxes: np.ndarray, a_scores: np.ndarray, b_boxes: np.ndarray, b_scores: np.ndarray
) -> int:
    """Boxes of either set without a twin (IoU >= 0.99, score within 1e-3) in the other."""
    if len(a_boxes) == 0 or len(b_boxes) == 0:
        return len(a_boxes) + len(b_boxes)
    twin = (iou_matrix(a_boxes, b_boxes) >= 0.99) & (
        np.abs(a_scores[:, None] - b_scores[None, :]) <= 1e-3
    )
    return int((~twin.any(axis=1)).sum() + (~twin.any(axis=0)).sum())
