"""`ProductDetector`: the exported detector graph in ONNX Runtime, photo in, boxes out.

The graph file carries what serving needs in its metadata (`retailklip.detector`, JSON):
preprocessing, pyramid strides, the default score threshold (chosen on rendered validation
shelves, never on real photos) and the NMS overlap. Decoding and NMS run in numpy
(app/detector/decode.py): on a 12 MP photo they take about a millisecond beside the forward
pass, and keeping them outside the graph lets the threshold and box limit change per call.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.detector.decode import postprocess
from app.detector.preprocess import DetectorPreprocess, prepare

METADATA_KEY = "retailklip.detector"
INPUT_NAME = "pixels"
OUTPUT_NAMES = ("logits", "regression")


class DetectorLoadError(RuntimeError):
    """The detector graph is missing, unreadable or not a RetailKLIP detector."""


@dataclass(frozen=True)
class Detection:
    """One product found: its box (x1, y1, x2, y2) in pixels of the photo given, and score."""

    box: tuple[int, int, int, int]
    score: float


@dataclass(frozen=True)
class DetectorMetadata:
    preprocess: DetectorPreprocess
    strides: tuple[int, ...]
    score_threshold: float
    nms_iou: float
    max_boxes: int
    model_id: str

    @classmethod
    def from_json(cls, text: str) -> DetectorMetadata:
        data: dict[str, Any] = json.loads(text)
        return cls(
            preprocess=DetectorPreprocess.from_dict(data["preprocess"]),
            strides=tuple(int(s) for s in data["strides"]),
            score_threshold=float(data["score_threshold"]),
            nms_iou=float(data["nms_iou"]),
            max_boxes=int(data["max_boxes"]),
            model_id=str(data["model_id"]),
        )


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)))


class ProductDetector:
    """Finds every product on a shelf photo. Thread-safe: ONNX Runtime sessions may run
    concurrently; nothing else here changes after loading."""

    def __init__(self, session: Any, metadata: DetectorMetadata, path: Path) -> None:
        self.session = session
        self.metadata = metadata
        self.path = path

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> ProductDetector:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise DetectorLoadError(f"detector graph not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between runs: request threads and the event loop need the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DetectorLoadError(f"detector graph {path} does not load: {exc}") from exc
        raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise DetectorLoadError(f"{path} has no {METADATA_KEY} metadata: not a detector")
        return cls(session, DetectorMetadata.from_json(raw), path)

    @property
    def model_id(self) -> str:
        return self.metadata.model_id

    def raw(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph's outputs for a (1, 3, H, W) float32 batch."""
        logits, regression = self.session.run(
            list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(pixels, dtype=np.float32)}
        )
        return np.asarray(logits, np.float32), np.asarray(regression, np.float32)

    def detect(
        self,
        image: Image.Image,
        score_threshold: float | None = None,
        max_boxes: int | None = None,
    ) -> list[Detection]:
        """Products on an upright photo, best score first. A JPEG opened but not yet loaded is
        decoded at a reduced scale (`Image.draft`), so pass it unloaded when you can."""
        meta = self.metadata
        threshold = meta.score_threshold if score_threshold is None else score_threshold
        limit = meta.max_boxes if max_boxes is None else max_boxes
        prepared = prepare(image, meta.preprocess)
        logits, regression = self.raw(prepared.pixels[None])
        boxes, scores = postprocess(
            logits[0],
            regression[0],
            (prepared.pixels.shape[1], prepared.pixels.shape[2]),
            meta.strides,
            prepared.scale,
            prepared.photo_size,
            threshold,
            meta.nms_iou,
            limit,
        )
        rounded = np.rint(boxes).astype(np.int64)
        return [
            Detection((int(b[0]), int(b[1]), int(b[2]), int(b[3])), float(s))
            for b, s in zip(rounded, scores, strict=True)
        ]
