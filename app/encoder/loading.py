"""The encoder the service runs, as its settings ask: model, device and inference runtime."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from app.encoder.identity import ModelIdentity, identify
from app.encoder.model_spec import BUILTIN_DIR, ModelLoadError, parse_model_spec
from app.encoder.onnx_graph import GraphEncoder, OnnxGraph, cpu_threads, graph_path
from app.encoder.preprocess import PreprocessConfig

log = logging.getLogger(__name__)


class ServingEncoder(Protocol):
    """What the service needs of an encoder: PyTorch's `Encoder` or ONNX's `GraphEncoder`."""

    preprocess: PreprocessConfig
    model_id: str
    embed_dim: int
    runtime: str

    @property
    def device(self) -> object: ...

    def embed_pixels(self, batch: np.ndarray) -> np.ndarray: ...

    def embed(self, images: list[Image.Image]) -> np.ndarray: ...


class EncoderChoice(Protocol):
    """The settings that choose the encoder (`app.settings.Settings` has them)."""

    @property
    def model(self) -> str: ...

    @property
    def device(self) -> str: ...

    @property
    def runtime(self) -> str: ...

    @property
    def onnx_dir(self) -> Path: ...


def load_service_encoder(settings: EncoderChoice) -> ServingEncoder:
    """ONNX Runtime serves the CPU; PyTorch loads the model when a graph must be made.

    One class per runtime: `GraphEncoder` (ONNX Runtime, no PyTorch) on the CPU, the PyTorch
    `Encoder` on CUDA or with `torch`. `auto` (the default) means ONNX Runtime on CPU and
    PyTorch (fp16 autocast, channels_last) on CUDA; it also keeps PyTorch, with a warning, for
    a model whose graph cannot be exported. An explicit `onnx` / `onnx-int8` on a CUDA device
    keeps PyTorch with a warning (one configuration can serve CPU and GPU hosts), and an export
    failure stops start-up. /readyz names the runtime actually in use.

    Graphs are found, in order: in `onnx_dir` (default DATA_DIR/onnx: always writable, shared
    by replicas), then beside a shipped checkpoint (app/models/: the default model's graph ships
    with the package, so `pip install .` serves it without PyTorch). A graph missing from both
    is exported from the PyTorch model into `onnx_dir`; the PyTorch module is then dropped and
    the service serves the graph it wrote, as every later start will.
    """
    cached = cached_graph_encoder(settings)
    if cached is not None:
        log.info("serving %s from its ONNX graph %s", cached.model_id, cached.graph.path)
        return cached
    if not torch_installed():
        raise ModelLoadError(without_torch(settings, graph_place(settings)))
    from app.encoder.torch_encoder import load_encoder

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
            encoder.module, encoder.preprocess, encoder.model_id, runtime, settings.onnx_dir
        )
    except Exception as exc:
        if requested != "auto":
            raise
        log.warning("no ONNX graph for %s (%s); serving with PyTorch", encoder.model_id, exc)
        return encoder
    return GraphEncoder(graph, encoder.preprocess, encoder.model_id, encoder.embed_dim, runtime)


@dataclass(frozen=True)
class GraphPlace:
    """Where the settings' model would be served from an exported graph, without PyTorch."""

    identity: ModelIdentity
    runtime: str  # "onnx" | "onnx-int8"
    path: Path


def graph_place(settings: EncoderChoice) -> GraphPlace | None:
    """Where the model's graph is, or would be exported to; None when the settings need
    PyTorch (a CUDA device, `torch`, an OpenCLIP tower)."""
    if settings.runtime == "torch" or not cpu_only(settings.device):
        return None
    identity = identify(parse_model_spec(settings.model))
    if identity is None:
        return None
    runtime = "onnx" if settings.runtime == "auto" else settings.runtime
    exported = graph_path(settings.onnx_dir, identity.model_id, runtime)
    shipped = graph_path(BUILTIN_DIR, identity.model_id, runtime)
    path = shipped if not exported.is_file() and shipped.is_file() else exported
    return GraphPlace(identity, runtime, path)


def cached_graph_encoder(settings: EncoderChoice) -> GraphEncoder | None:
    """The CPU encoder from an already exported graph, without PyTorch; None when the settings
    need PyTorch or the graph is not there yet."""
    place = graph_place(settings)
    if place is None or not place.path.is_file():
        return None
    identity, runtime, path = place.identity, place.runtime, place.path
    try:
        graph = OnnxGraph(path, cpu_threads())
    except Exception as exc:  # unreadable: the PyTorch path exports it again
        log.warning("cached ONNX graph %s does not load (%s)", path, exc)
        return None
    encoder = GraphEncoder(
        graph, identity.preprocess, identity.model_id, identity.embed_dim, runtime
    )
    out = encoder.embed_pixels(np.zeros((1, 3, *(2 * [identity.preprocess.image_size])), "f4"))
    if out.shape != (1, identity.embed_dim):
        log.warning("cached ONNX graph %s gives shape %s; exporting again", path, out.shape)
        return None
    return encoder


def serving_blocker(settings: EncoderChoice) -> str | None:
    """Why these settings cannot serve from this install (no PyTorch, no graph), checked
    before the server starts; None when they can, or when only loading will tell."""
    if torch_installed():
        return None
    place = graph_place(settings)
    if place is not None and place.path.is_file():
        return None
    return without_torch(settings, place)


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def without_torch(settings: EncoderChoice, place: GraphPlace | None) -> str:
    """Why this torch-free install cannot serve these settings, and what makes it able to."""
    if settings.runtime == "torch" or not cpu_only(settings.device):
        return (
            f"RETAILKLIP_RUNTIME={settings.runtime} / RETAILKLIP_DEVICE={settings.device} needs "
            "PyTorch, which this install lacks: pip install 'retailklip[torch]'"
        )
    if place is None:
        return (
            f"model {settings.model!r} is built from a PyTorch tower at start-up and this install "
            "has no PyTorch: serve a RetailKLIP checkpoint whose ONNX graph is exported, or "
            "pip install 'retailklip[torch]'"
        )
    where = place.path.parent
    return (
        f"no ONNX graph for model {place.identity.model_id} ({place.runtime}) in {where}, and "
        "this install has no PyTorch to export one. Make it where PyTorch is installed "
        f"(pip install 'retailklip[torch]'): retailklip export-onnx --model {settings.model} "
        f"--runtime {place.runtime} --out {where} (or into a directory you then copy to "
        "RETAILKLIP_ONNX_DIR)"
    )


def cpu_only(device: str) -> bool:
    """The device setting means the CPU: `cpu`, or `auto` on a host without an NVIDIA driver
    (looked up without importing torch; a GPU host takes the PyTorch path, which decides)."""
    return device == "cpu" or (
        device == "auto" and not Path("/proc/driver/nvidia/version").exists()
    )
