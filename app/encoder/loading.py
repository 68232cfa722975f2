"""The encoder the service runs, as its settings ask: model, device and inference runtime."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from app.encoder.torch_encoder import Encoder, load_encoder

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)


def load_service_encoder(settings: Settings) -> Encoder:
    """PyTorch always loads the model; an ONNX runtime then serves the graph exported from it.

    ONNX Runtime is the CPU path only. `auto` (the default) means ONNX Runtime on CPU and
    PyTorch (fp16 autocast, channels_last) on CUDA; it also keeps PyTorch, with a warning, for
    a model whose graph cannot be exported. An explicit `onnx` / `onnx-int8` on a CUDA device
    keeps PyTorch with a warning (one configuration can serve CPU and GPU hosts), and an export
    failure stops start-up. /readyz names the runtime actually in use.

    Exported graphs are cached in `onnx_dir` (default DATA_DIR/onnx): always writable (the
    package directory may not be, e.g. in the image), and replicas sharing it reuse the export.
    """
    encoder = load_encoder(settings.model, settings.device)
    requested = settings.runtime
    if requested == "torch" or (requested == "auto" and encoder.device.type != "cpu"):
        return encoder
    if requested == "auto" and encoder.model_id.endswith(":random"):
        return encoder  # fresh random weights (tests only) each start: an export is pure cost
    if encoder.device.type != "cpu":
        log.warning(
            "RETAILKLIP_RUNTIME=%s is a CPU runtime; device %s keeps PyTorch",
            requested,
            encoder.device,
        )
        return encoder
    from app.encoder.onnx_encoder import load_graph

    runtime = "onnx" if requested == "auto" else requested
    try:
        graph = load_graph(
            encoder.module,
            encoder.preprocess,
            encoder.model_id,
            runtime,
            settings.resolved_onnx_dir,
        )
    except Exception as exc:
        if requested != "auto":
            raise
        log.warning("no ONNX graph for %s (%s); serving with PyTorch", encoder.model_id, exc)
        return encoder
    return replace(encoder, runtime=runtime, graph=graph)
