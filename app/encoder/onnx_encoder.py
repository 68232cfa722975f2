"""ONNX Runtime as the CPU inference engine: the graph exported from the loaded model, cached.

The exported graph computes what `Encoder.embed_tensor` computes on CPU (tower, pooling,
projection, the mirror view when the model uses one, L2 normalisation), from the same
preprocessed pixels, so preprocessing stays one piece of code. It is exported at first start and
cached under `DATA_DIR/onnx/`, one file per model id (which carries the checkpoint's digest) and
export version: `<model-id>-v<N>-fp32.onnx` and, for `onnx-int8`, `...-int8.onnx` (weights
quantised to INT8 by onnxruntime's dynamic quantisation; activations quantised per batch at
run time, so no calibration photos are needed). Files are written with temp file + fsync +
rename: a process starting beside another one that is still exporting never reads half a file,
at worst both export and the last rename wins with identical content.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import torch
from torch import nn

from app.encoder.model_spec import ModelLoadError
from app.encoder.onnx_graph import ONNX_RUNTIMES, OnnxGraph, cpu_threads, graph_path
from app.encoder.preprocess import PreprocessConfig
from app.encoder.torch_encoder import unit_embeddings, with_mirror
from app.storage.files import atomic_path

log = logging.getLogger(__name__)

OPSET = 17
# Start-up check on fixed random pixels: the fp32 graph must give the PyTorch embeddings.
MIN_COSINE_FP32 = 0.999


class EmbeddingGraph(nn.Module):
    """The CPU branch of `Encoder.embed_tensor` as one module, for export."""

    def __init__(self, tower: nn.Module, flip: bool) -> None:
        super().__init__()
        self.tower = tower
        self.flip = flip

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        n = pixels.shape[0]
        return unit_embeddings(self.tower(with_mirror(pixels, self.flip)), n, self.flip)


def export_graph(tower: nn.Module, preprocess: PreprocessConfig, path: Path) -> None:
    """torch.onnx.export of the embedding computation, batch size dynamic, written atomically."""
    graph = EmbeddingGraph(tower, preprocess.flip).eval()
    example = torch.zeros(2, 3, preprocess.image_size, preprocess.image_size)
    with atomic_path(path) as tmp, torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            graph,
            (example,),
            str(tmp),
            input_names=["pixels"],
            output_names=["embedding"],
            dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: no extra dependency, handles timm towers
        )


def quantize_graph(fp32_path: Path, int8_path: Path) -> None:
    """INT8 weights (dynamic quantisation: no calibration data), written atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    quiet = _SkipIntegerTensorWarnings()
    root.addFilter(quiet)
    try:
        with atomic_path(int8_path) as tmp:
            quantize_dynamic(str(fp32_path), str(tmp), weight_type=QuantType.QUInt8)
    finally:
        root.removeFilter(quiet)


class _SkipIntegerTensorWarnings(logging.Filter):
    """The quantiser warns, with a proto dump each, about the int64 shape tensors of "same"
    padding; they are not meant to be quantised, so the warnings only clutter the start-up log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Inference failed or unsupported type to quantize")


def load_graph(
    tower: nn.Module, preprocess: PreprocessConfig, model_id: str, runtime: str, cache_dir: Path
) -> OnnxGraph:
    """The cached graph for this model and runtime, exported (and quantised) if missing or
    unusable, and checked against the PyTorch tower before it serves.

    A fresh fp32 export is checked before it is renamed into place, so a file in the cache has
    passed the check once: a replica that finds it can serve it without PyTorch
    (app/encoder/loading.py)."""
    if runtime not in ONNX_RUNTIMES:
        raise ModelLoadError(f"unknown ONNX runtime {runtime!r}: use one of {ONNX_RUNTIMES}")
    threads = cpu_threads()
    fp32 = graph_path(cache_dir, model_id, "onnx")
    target = graph_path(cache_dir, model_id, runtime)
    for attempt in ("cached", "fresh"):
        if attempt == "fresh" or not target.is_file():
            if attempt == "fresh" or not fp32.is_file():
                export_checked(tower, preprocess, model_id, fp32, threads)
            if runtime == "onnx-int8":
                log.info("quantising %s to INT8: %s", model_id, target)
                quantize_graph(fp32, target)
        try:
            graph = OnnxGraph(target, threads)
            cosine = agreement(graph, tower, preprocess)
        except Exception as exc:  # unreadable cache (copied by hand, other ORT): export again
            if attempt == "fresh":
                raise ModelLoadError(f"ONNX graph {target} does not load: {exc}") from exc
            log.warning("cached ONNX graph %s unusable (%s); exporting again", target, exc)
            continue
        if runtime == "onnx" and cosine < MIN_COSINE_FP32:
            log.warning("cached ONNX graph %s is stale (cosine %.5f)", target, cosine)
            continue
        log.info("ONNX %s graph %s: cosine to PyTorch %.5f", runtime, target, cosine)
        return graph
    raise ModelLoadError(f"ONNX graph {target} disagrees with PyTorch after a fresh export")


def export_checked(
    tower: nn.Module, preprocess: PreprocessConfig, model_id: str, path: Path, threads: int
) -> None:
    """Export the fp32 graph beside `path`, check it against PyTorch, then rename it into place."""
    log.info("exporting %s to ONNX: %s", model_id, path)
    # One staging name per export: replicas sharing the cache may export at the same moment.
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}.unchecked")
    export_graph(tower, preprocess, staged)
    try:
        cosine = agreement(OnnxGraph(staged, threads), tower, preprocess)
        if cosine < MIN_COSINE_FP32:
            raise ModelLoadError(
                f"ONNX export of {model_id} disagrees with PyTorch (cosine {cosine:.5f})"
            )
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def agreement(graph: OnnxGraph, tower: nn.Module, preprocess: PreprocessConfig) -> float:
    """Lowest cosine between the graph's and PyTorch's embeddings of fixed random pixels."""
    size = preprocess.image_size
    pixels = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = EmbeddingGraph(tower, preprocess.flip).eval()(pixels).numpy()
    out = graph.run(pixels.numpy())
    if out.shape != reference.shape:
        raise ModelLoadError(f"ONNX graph gives shape {out.shape}, expected {reference.shape}")
    return float((out * reference).sum(axis=1).min())
