"""`retailklip export-onnx`: write a model's checked ONNX graph into a directory, so that a
torch-free install (or the slim image) can serve it (app/encoder/loading.py)."""

from __future__ import annotations

import logging
from pathlib import Path

from app.encoder.identity import identify
from app.encoder.loading import torch_installed
from app.encoder.model_spec import ModelLoadError, parse_model_spec
from app.encoder.onnx_graph import ONNX_RUNTIMES


def run_export(model: str, runtime: str, out: Path) -> int:
    if runtime not in ONNX_RUNTIMES:
        raise ModelLoadError(f"unknown ONNX runtime {runtime!r}: use one of {ONNX_RUNTIMES}")
    if not torch_installed():
        raise ModelLoadError(
            "exporting needs PyTorch, which this install lacks: pip install 'retailklip[torch]'"
        )
    identity = identify(parse_model_spec(model))
    if identity is None:
        raise ModelLoadError(
            f"{model!r} has no fixed identity a served graph could be found by (an OpenCLIP "
            "tower, or random weights): export a RetailKLIP checkpoint or efficientnet-lite0"
        )
    from app.encoder.onnx_encoder import load_graph
    from app.encoder.torch_encoder import load_encoder

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    encoder = load_encoder(model, "cpu")
    out.mkdir(parents=True, exist_ok=True)
    graph = load_graph(encoder.module, encoder.preprocess, encoder.model_id, runtime, out)
    print(f"{graph.path}: {encoder.model_id} ({runtime}), checked against PyTorch")
    return 0
