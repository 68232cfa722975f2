"""The PyTorch detector run as the service runs the graph: same preprocessing, same numpy
decoding and NMS (app/detector/), so a figure measured here holds for the served graph."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from app.detector.decode import postprocess
from app.detector.preprocess import DetectorPreprocess, prepare
from training.detector.model import ProductDetector

# Defaults before a threshold is chosen on rendered validation shelves (see export).
NMS_IOU = 0.5


@torch.no_grad()
def torch_detect(
    model: ProductDetector,
    image: Image.Image,
    preprocess: DetectorPreprocess,
    device: torch.device,
    score_threshold: float = 0.05,
    max_boxes: int = 1000,
    nms_iou: float = NMS_IOU,
) -> tuple[np.ndarray, np.ndarray]:
    prepared = prepare(image, preprocess)
    pixels = torch.from_numpy(prepared.pixels)[None].to(device)
    logits, regression = model.raw_outputs(pixels)
    return postprocess(
        logits[0].float().cpu().numpy(),
        regression[0].float().cpu().numpy(),
        (pixels.shape[2], pixels.shape[3]),
        model.cfg.strides,
        prepared.scale,
        prepared.photo_size,
        score_threshold,
        nms_iou,
        max_boxes,
    )
