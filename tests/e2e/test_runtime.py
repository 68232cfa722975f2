"""RETAILKLIP_RUNTIME: the setting, the ONNX export and its cache, agreement with PyTorch on real
photos, the CUDA rule, and a live server on ONNX Runtime that classifies correctly."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from app.encoder import onnx_encoder as onnx_module
from app.encoder import torch_encoder as torch_encoder_module
from app.encoder.decode import decode_image
from app.encoder.identity import identify
from app.encoder.loading import load_service_encoder
from app.encoder.model_spec import BUILTIN_DIR, ModelLoadError, parse_model_spec
from app.encoder.onnx_graph import OnnxGraph, graph_path
from app.encoder.preprocess import PreprocessConfig, eval_pixels, eval_transform
from app.encoder.torch_encoder import Encoder
from app.settings import ModelSettings, Settings
from tests.e2e.test_e2e import PRODUCTS, classify_all, register
from tests.support.cli import retailklip
from tests.support.paths import GROCERY, REPO
from tests.support.servers import LiveServer

MODEL = "retailklip-lite0-shelf"  # the shipped default (its graph ships beside it)
EXPORTED = "retailklip-lite0-grocery"  # a shipped checkpoint whose graph is made at first start


def settings(tmp_path: Path, runtime: str, model: str = EXPORTED) -> ModelSettings:
    return Settings(model=model, device="cpu", runtime=runtime, data_dir=tmp_path).model_choice


def shelf_batch(encoder: Encoder, count: int = 24) -> torch.Tensor:
    """Real in-store photos, spread over the classes, preprocessed by the service's transform."""
    photos = sorted((GROCERY / "test").rglob("*.jpg"))
    photos = photos[:: max(1, len(photos) // count)][:count]
    transform = eval_transform(encoder.preprocess)
    return torch.stack([transform(decode_image(p.read_bytes(), 10**8)) for p in photos])


def test_runtime_setting_accepts_the_three_runtimes_and_refuses_others(monkeypatch) -> None:
    assert Settings().runtime == "auto"
    for value in ("auto", "torch", "onnx", "onnx-int8"):
        monkeypatch.setenv("RETAILKLIP_RUNTIME", value)
        assert Settings().runtime == value
    monkeypatch.setenv("RETAILKLIP_RUNTIME", "tensorrt")
    with pytest.raises(ValidationError) as refused:
        Settings()
    message = str(refused.value)
    assert "runtime" in message and "'auto', 'torch', 'onnx' or 'onnx-int8'" in message


def test_serve_refuses_an_unknown_runtime_at_start_up(tmp_path: Path) -> None:
    env = {"RETAILKLIP_RUNTIME": "onnx-fp16", "RETAILKLIP_DATA_DIR": str(tmp_path)}
    done = retailklip("serve", env=env, timeout=120)
    assert done.returncode != 0
    expected = "Input should be 'auto', 'torch', 'onnx' or 'onnx-int8'"
    assert "RETAILKLIP_RUNTIME" in done.stderr and expected in done.stderr
    assert not (tmp_path / "onnx").exists()  # refused before any model work


def test_onnx_export_is_cached_by_model_id_and_matches_pytorch_on_real_photos(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    torch_encoder = load_service_encoder(settings(tmp_path, "torch"))
    onnx_encoder = load_service_encoder(settings(tmp_path, "onnx"))
    assert (onnx_encoder.runtime, torch_encoder.runtime) == ("onnx", "torch")
    cached = graph_path(tmp_path / "onnx", onnx_encoder.model_id, "onnx")
    assert cached.is_file() and onnx_encoder.graph is not None
    assert onnx_encoder.model_id.split(":")[1] in cached.name  # keyed by the checkpoint digest
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temp file left

    assert type(onnx_encoder).__name__ == "GraphEncoder"  # the torch module was dropped
    batch = shelf_batch(torch_encoder)
    ours, reference = onnx_encoder.embed_pixels(batch.numpy()), torch_encoder.embed_tensor(batch)
    assert ours.shape == reference.shape == (len(batch), torch_encoder.embed_dim)
    cosine = (ours * reference).sum(axis=1)
    assert cosine.min() >= 0.999, cosine
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # Batch size is dynamic in the graph: one photo alone embeds as it does in a batch.
    assert (onnx_encoder.embed_pixels(batch[:1].numpy())[0] @ ours[0]) > 0.9999

    # A second start reads the cache: nothing is exported again.
    stamp = cached.stat().st_mtime_ns

    def no_export(*args: object) -> None:
        raise AssertionError("exported although a valid cached graph exists")

    monkeypatch.setattr(onnx_module, "export_graph", no_export)
    again = load_service_encoder(settings(tmp_path, "onnx"))
    assert cached.stat().st_mtime_ns == stamp
    assert (again.embed_pixels(batch[:4].numpy()) * ours[:4]).sum(axis=1).min() > 0.9999
    monkeypatch.undo()

    # A damaged cache file (not one we wrote: ours are renamed into place whole) is replaced.
    cached.write_bytes(cached.read_bytes()[:5000])
    with caplog.at_level(logging.WARNING):
        repaired = load_service_encoder(settings(tmp_path, "onnx"))
    assert "unusable" in caplog.text
    assert (repaired.embed_pixels(batch[:4].numpy()) * ours[:4]).sum(axis=1).min() > 0.9999
    assert cached.stat().st_size > 5000


def test_a_failed_export_leaves_no_file_behind(tmp_path: Path, monkeypatch) -> None:
    def half_written(graph: object, args: object, path: str, **kwargs: object) -> None:
        Path(path).write_bytes(b"\x08\x07half a graph")
        raise RuntimeError("export interrupted")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(RuntimeError, match="export interrupted"):
        load_service_encoder(settings(tmp_path, "onnx"))
    assert list((tmp_path / "onnx").iterdir()) == []  # neither the graph nor its temp file


def test_int8_graph_is_cached_beside_fp32_and_stays_close(tmp_path: Path) -> None:
    torch_encoder = load_service_encoder(settings(tmp_path, "torch"))
    int8 = load_service_encoder(settings(tmp_path, "onnx-int8"))
    assert int8.runtime == "onnx-int8"
    names = sorted(p.name for p in (tmp_path / "onnx").iterdir())
    assert [n.rsplit("-", 1)[1] for n in names] == ["fp32.onnx", "int8.onnx"]
    batch = shelf_batch(torch_encoder, 16)
    ours, reference = int8.embed_pixels(batch.numpy()), torch_encoder.embed_tensor(batch)
    # Dynamically quantised weights move embeddings (cosine ~0.93 on average; the accuracy cost
    # is measured in the README), but each photo's INT8 embedding is still nearest to its own
    # PyTorch embedding among the others': the same model, not noise.
    similarity = ours @ reference.T
    assert (similarity.argmax(axis=1) == np.arange(len(batch))).all(), similarity
    assert (ours * reference).sum(axis=1).mean() > 0.85


def test_cuda_keeps_pytorch_whatever_the_runtime(tmp_path: Path, monkeypatch, caplog) -> None:
    cpu = load_service_encoder(settings(tmp_path, "torch"))
    on_gpu = replace(cpu, device=torch.device("cuda"))
    monkeypatch.setattr(torch_encoder_module, "load_encoder", lambda model, device: on_gpu)
    with caplog.at_level(logging.WARNING):
        encoder = load_service_encoder(settings(tmp_path, "auto"))
    assert encoder.runtime == "torch" and isinstance(encoder, Encoder)
    assert caplog.text == ""  # the default: PyTorch on CUDA is the plan, not a fallback
    with caplog.at_level(logging.WARNING):
        encoder = load_service_encoder(settings(tmp_path, "onnx"))
    assert encoder.runtime == "torch" and isinstance(encoder, Encoder)
    assert "CPU runtime" in caplog.text and "keeps PyTorch" in caplog.text
    assert not (tmp_path / "onnx").exists()


def test_auto_is_onnx_on_cpu_and_pytorch_when_a_model_cannot_be_exported(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    encoder = load_service_encoder(settings(tmp_path, "auto"))
    assert encoder.runtime == "onnx" and type(encoder).__name__ == "GraphEncoder"

    def unexportable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("operator not supported")

    monkeypatch.setattr(torch.onnx, "export", unexportable)
    with caplog.at_level(logging.WARNING):
        fallback = load_service_encoder(settings(tmp_path / "other", "auto"))
    assert fallback.runtime == "torch" and isinstance(fallback, Encoder)
    assert "serving with PyTorch" in caplog.text and "operator not supported" in caplog.text
    with pytest.raises(RuntimeError, match="operator not supported"):  # asked for: no fallback
        load_service_encoder(settings(tmp_path / "other", "onnx"))


def test_live_server_on_onnx_runtime_classifies_shelf_photos(live_server, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server: LiveServer = live_server(
        data_dir=data, model=EXPORTED, runtime="onnx", onnx_dir=data / "onnx"
    )
    with httpx.Client(base_url=server.url, timeout=60) as client:
        ready = client.get("/readyz").json()
        assert ready["runtime"] == "onnx" and ready["device"] == "cpu"
        assert list((data / "onnx").glob("*-fp32.onnx"))
        for sku, folder in PRODUCTS.items():
            register(client, sku, folder.rsplit("/", 1)[-1])
        answers = classify_all(client)
    top1 = sum(skus[0] == sku for (sku, _), skus in answers.items()) / len(answers)
    assert top1 >= 0.7, answers  # six products; the shipped model gets most shelf photos right
    assert all(sku in skus for (sku, _), skus in answers.items())


def test_service_pixels_are_torchvision_pixels_on_real_photos() -> None:
    """The service preprocesses with PIL and numpy (no torch); training and evaluation with
    torchvision. Both must give the very same pixels, in every framing mode."""
    photos = sorted((GROCERY / "test").rglob("*.jpg"))[::150]
    photos += sorted((GROCERY / "iconic-images-and-descriptions").rglob("*.jpg"))[::40]
    configs = [
        identify(parse_model_spec(MODEL)).preprocess,  # the shipped model's: pad
        PreprocessConfig(),  # crop 0.875
        PreprocessConfig(image_size=240, crop_pct=1.0),
    ]
    for cfg in configs:
        transform = eval_transform(cfg)
        for photo in photos:
            image = decode_image(photo.read_bytes(), 10**8)
            for framed in (image, image.rotate(90, expand=True), image.crop((0, 0, 97, 31))):
                expected = transform(framed).numpy()
                assert np.array_equal(eval_pixels(framed, cfg), expected), (photo, cfg)


def test_a_fresh_export_that_disagrees_with_pytorch_is_never_cached(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(onnx_module, "agreement", lambda *args: 0.5)
    with pytest.raises(ModelLoadError, match="disagrees with PyTorch"):
        load_service_encoder(settings(tmp_path, "onnx"))
    assert list((tmp_path / "onnx").iterdir()) == []  # a replica could not trust it later


def test_a_cached_graph_serves_without_loading_pytorch(tmp_path: Path) -> None:
    """A CPU replica whose graph was exported (and checked) before starts from the checkpoint's
    metadata and the graph alone: no torch in the process, the same embeddings."""
    torch_encoder = load_service_encoder(settings(tmp_path, "torch"))
    load_service_encoder(settings(tmp_path, "onnx"))  # the first start exports
    photos = sorted((GROCERY / "test").rglob("*.jpg"))[::400]
    script = f"""
import json, sys
from PIL import Image
from app.encoder.loading import load_service_encoder
from app.encoder.decode import decode_image
from app.settings import ModelSettings, Settings

encoder = load_service_encoder(
    Settings(model={EXPORTED!r}, device="cpu", runtime="onnx", data_dir={str(tmp_path)!r})
    .model_choice
)
images = [decode_image(open(p, "rb").read(), 10**8) for p in {[str(p) for p in photos]!r}]
print(json.dumps({{
    "kind": type(encoder).__name__,
    "model": encoder.model_id,
    "runtime": encoder.runtime,
    "torch": sorted(m for m in ("torch", "torchvision", "open_clip", "timm") if m in sys.modules),
    "vectors": encoder.embed(images).tolist(),
}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["kind"] == "GraphEncoder" and seen["torch"] == []
    assert (seen["model"], seen["runtime"]) == (torch_encoder.model_id, "onnx")
    images = [decode_image(p.read_bytes(), 10**8) for p in photos]
    cosine = (np.array(seen["vectors"]) * torch_encoder.embed(images)).sum(axis=1)
    assert cosine.min() >= 0.999, cosine


def test_the_default_model_serves_its_shipped_graph_without_an_export(tmp_path: Path) -> None:
    """`pip install .` serves the default model at once: its graph ships beside it."""
    encoder = load_service_encoder(settings(tmp_path, "auto", MODEL))
    assert type(encoder).__name__ == "GraphEncoder" and encoder.runtime == "onnx"
    assert encoder.graph.path.parent == BUILTIN_DIR
    assert not (tmp_path / "onnx").exists()  # nothing exported


def test_the_shipped_graph_is_its_checkpoint_exported(tmp_path: Path) -> None:
    """Exported again from the shipped checkpoint, the graph has the shipped one's name (the
    same model id) and gives the same embeddings on real photos."""
    made = retailklip("export-onnx", "--model", MODEL, "--out", str(tmp_path))
    assert made.returncode == 0, made.stderr
    [fresh] = tmp_path.glob("*.onnx")
    shipped = BUILTIN_DIR / fresh.name
    assert shipped.is_file(), f"app/models/ ships no {fresh.name}: re-export it"
    torch_encoder = load_service_encoder(settings(tmp_path, "torch", MODEL))
    batch = shelf_batch(torch_encoder, 16).numpy()
    ours = OnnxGraph(shipped, 2).run(batch)
    again = OnnxGraph(fresh, 2).run(batch)
    assert (ours * again).sum(axis=1).min() >= 0.999
