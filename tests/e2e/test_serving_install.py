"""The serving install without PyTorch (`pip install .`, no extras) in a fresh venv: it serves a
graph `retailklip export-onnx` made, over real HTTP, registering and classifying real photos with
the same scores as the PyTorch install, and never imports torch; a model without a graph fails at
start-up naming the command that makes one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.cli import retailklip
from tests.support.paths import GROCERY, REPO
from tests.support.servers import LiveServer, settings_env
from tests.support.serving_venv import serving_venv, torch_family_installed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

MODEL = "efficientnet-lite0"  # the offline ImageNet backbone: what the suite serves
PRODUCTS = {
    "oatly-oat": "train/Packages/Oat-Milk/Oatly-Oat-Milk",
    "arla-milk": "train/Packages/Milk/Arla-Standard-Milk",
}
QUERY = GROCERY / "test/Packages/Oat-Milk/Oatly-Oat-Milk"


@pytest.fixture(scope="module")
def python() -> Path:
    python = serving_venv()
    assert torch_family_installed(python) == []
    return python


def classify_and_register(server: LiveServer) -> dict[str, object]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for sku, folder in PRODUCTS.items():
            photos = sorted((GROCERY / folder).glob("*.jpg"))[:3]
            answer = client.post(
                "/products",
                data={"sku": sku, "name": sku},
                files=[("images", (p.name, p.read_bytes(), "image/jpeg")) for p in photos],
            )
            assert answer.status_code == 201, answer.text
        query = sorted(QUERY.glob("*.jpg"))[-1]
        answer = client.post(
            "/classify?top_k=2", files={"image": ("q.jpg", query.read_bytes(), "image/jpeg")}
        )
        assert answer.status_code == 200, answer.text
        ready = client.get("/readyz").json()
    return {"classify": answer.json(), "ready": ready}


def test_serves_a_cached_graph_without_torch(python: Path, tmp_path: Path) -> None:
    onnx_dir = tmp_path / "onnx"
    made = retailklip("export-onnx", "--model", MODEL, "--out", str(onnx_dir))
    assert made.returncode == 0, made.stderr
    assert len(list(onnx_dir.glob("*.onnx"))) == 1

    modules_file = tmp_path / "modules.json"
    settings = {"data_dir": tmp_path / "slim", "model": MODEL, "onnx_dir": onnx_dir}
    slim = LiveServer(
        env={**settings_env(settings), "RETAILKLIP_TEST_MODULES_FILE": str(modules_file)},
        log_path=tmp_path / "slim.log",
        python=str(python),
        command=("-m", "tests.support.serve_and_report"),
    ).start()
    try:
        without = classify_and_register(slim)
    finally:
        slim.stop()
    assert json.loads(modules_file.read_text()) == [], "the serving process imported PyTorch"

    # The same requests to the PyTorch install, serving the model with PyTorch itself.
    full_settings = {"data_dir": tmp_path / "full", "model": MODEL, "runtime": "torch"}
    full = LiveServer(env=settings_env(full_settings), log_path=tmp_path / "full.log").start()
    try:
        with_torch = classify_and_register(full)
    finally:
        full.stop()
    slim_answer, torch_answer = without["classify"], with_torch["classify"]
    assert without["ready"]["runtime"] == "onnx"  # type: ignore[index]
    assert [m["sku"] for m in slim_answer["matches"]] == ["oatly-oat", "arla-milk"]  # type: ignore[index]
    assert [m["sku"] for m in slim_answer["matches"]] == [  # type: ignore[index]
        m["sku"]
        for m in torch_answer["matches"]  # type: ignore[index]
    ]
    for a, b in zip(slim_answer["matches"], torch_answer["matches"], strict=True):  # type: ignore[index]
        assert abs(a["score"] - b["score"]) < 2e-3, (a, b)


def test_a_model_without_a_graph_fails_at_start_naming_the_command(
    python: Path, tmp_path: Path
) -> None:
    settings = {"data_dir": tmp_path / "data", "model": MODEL, "onnx_dir": tmp_path / "empty"}
    started = subprocess.run(
        [str(python), "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode != 0
    assert "retailklip export-onnx --model efficientnet-lite0" in started.stderr
    assert "pip install 'retailklip[torch]'" in started.stderr
    assert "Traceback" not in started.stderr  # a message, not a crash


def test_the_serving_install_serves_the_default_model_at_once(python: Path, tmp_path: Path) -> None:
    """README command 1: no PyTorch, no export, no ONNX directory prepared: the default
    encoder's graph ships beside its checkpoint."""
    modules_file = tmp_path / "modules.json"
    settings = {"data_dir": tmp_path / "data"}  # the defaults: the shipped model, its graph
    slim = LiveServer(
        env={**settings_env(settings), "RETAILKLIP_TEST_MODULES_FILE": str(modules_file)},
        log_path=tmp_path / "slim.log",
        python=str(python),
        command=("-m", "tests.support.serve_and_report"),
    ).start()
    try:
        ready = httpx.get(f"{slim.url}/readyz", timeout=30).json()
    finally:
        slim.stop()
    assert (ready["model_name"], ready["runtime"]) == ("retailklip-lite0-shelf", "onnx")
    assert not (tmp_path / "data/onnx").exists()  # nothing was exported
    assert json.loads(modules_file.read_text()) == [], "the serving process imported PyTorch"
