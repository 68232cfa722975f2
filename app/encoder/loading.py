"""The encoder the service runs, as its settings ask: model, device and inference runtime."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from app.encoder.runtime import Encoder, load_encoder

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger(__name__)


def onnx_cache_dir(settings: Settings) -> Path:
    """Exported graphs live with the service's data: always writable (the package directory
    may not be, e.g. in the image), and a replica sharing DATA_DIR reuses the export."""
    return settings.data_dir / "onnx"


def load_service_encoder(settings: Settings) -> Encoder:
    """PyTorch always loads the model; an ONNX runtime then serves the graph exported from it.

    ONNX Runtime is the CPU path only: on a CUDA device the service keeps PyTorch (fp16
    autocast, channels_last) and says so in the log and in /readyz, so one configuration can
    serve CPU and GPU hosts."""
    encoder = load_encoder(settings.model, settings.device)
    if settings.runtime == "torch":
        return encoder
    if encoder.device.type != "cpu":
        log.warning(
            "RETAILKLIP_RUNTIME=%s is a CPU runtime; device %s keeps PyTorch",
            settings.runtime,
            encoder.device,
        )
        return encoder
    from app.encoder.onnx_runtime import load_graph

    graph = load_graph(
        encoder.module,
        encoder.preprocess,
        encoder.model_id,
        settings.runtime,
        onnx_cache_dir(settings),
    )
    return replace(encoder, runtime=settings.runtime, graph=graph)
