"""An exported embedding graph in ONNX Runtime, and the encoder that serves from it alone.

Light on purpose (no torch): a CPU replica whose graph is cached starts from the checkpoint's
metadata and this file (app/encoder/loading.py); exporting needs PyTorch
(app/encoder/onnx_encoder.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.encoder.preprocess import PreprocessConfig, eval_batch

ONNX_RUNTIMES = ("onnx", "onnx-int8")
# Bump when the exported computation changes, so caches written by an older release are ignored.
EXPORT_VERSION = 1


def graph_path(cache_dir: Path, model_id: str, runtime: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)
    kind = "int8" if runtime == "onnx-int8" else "fp32"
    return cache_dir / f"{safe}-v{EXPORT_VERSION}-{kind}.onnx"


def cpu_threads() -> int:
    """The intra-op threads a CPU forward pass gets: OMP_NUM_THREADS when set (as PyTorch
    reads it), else the CPUs this process may run on."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, len(os.sched_getaffinity(0)))


class OnnxGraph:
    """One ONNX Runtime session; `run` takes preprocessed pixels, returns unit float32 rows."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between runs: the decode pool, the event loop and SQL threads need
        # those cores (spinning workers starved them under a 64-client load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, pixels: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(pixels, dtype=np.float32)
        out: Any = self.session.run(["embedding"], {"pixels": batch})[0]
        return np.asarray(out, dtype=np.float32)


@dataclass
class GraphEncoder:
    """A model served from its cached ONNX graph only: what `Encoder` offers the service
    (`embed_pixels`, `embed`, identity), without PyTorch in the process."""

    graph: OnnxGraph
    preprocess: PreprocessConfig
    model_id: str
    embed_dim: int
    runtime: str
    device: str = "cpu"

    def embed_pixels(self, batch: np.ndarray) -> np.ndarray:
        return self.graph.run(batch)

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return self.embed_pixels(eval_batch(images, self.preprocess))
