"""One model-spec resolver for serving and training: every form, and the light settings import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.encoder.model_spec import (
    BUILTIN_CHECKPOINTS,
    ModelLoadError,
    ModelSpec,
    parse_model_spec,
)
from app.encoder.torch_encoder import load_tower
from tests.support.paths import REPO
from training.towers import start_tower

REPO = REPO


def test_builtin_name_is_the_shipped_checkpoint() -> None:
    spec = parse_model_spec("retailklip-lite0-grocery")
    assert spec == ModelSpec("checkpoint", path=BUILTIN_CHECKPOINTS["retailklip-lite0-grocery"])
    assert spec.path is not None and spec.path.is_file()


def test_checkpoint_path_and_missing_checkpoint(tmp_path: Path) -> None:
    shipped = BUILTIN_CHECKPOINTS["retailklip-lite0-shelf"]
    assert parse_model_spec(str(shipped)) == ModelSpec("checkpoint", path=shipped)
    with pytest.raises(ModelLoadError, match="checkpoint file not found"):
        parse_model_spec(str(tmp_path / "nope.safetensors"))


def test_offline_backbone_and_openclip_forms() -> None:
    assert parse_model_spec("efficientnet-lite0") == ModelSpec("offline")
    assert parse_model_spec("ViT-B-32:random") == ModelSpec(
        "openclip", name="ViT-B-32", tag="random"
    )
    assert parse_model_spec("ViT-B-32:laion2b_s34b_b79k").tag == "laion2b_s34b_b79k"


@pytest.mark.parametrize("spec", ["ViT-B-32", "no-such-model", ":random", "ViT-B-32:", ""])
def test_unrecognised_forms_are_refused_with_the_list_of_forms(spec: str) -> None:
    # A bare OpenCLIP name used to mean random weights in training and an error in serving.
    with pytest.raises(ModelLoadError, match="NAME:TAG"):
        parse_model_spec(spec)


def test_training_and_serving_resolve_a_builtin_name_to_the_same_weights() -> None:
    # `retailklip train --model retailklip-lite0-grocery` used to fail: "unknown OpenCLIP model".
    served, _, model_id, dim = load_tower("retailklip-lite0-grocery")
    trained, tower_cfg, _ = start_tower("retailklip-lite0-grocery", 160)
    assert model_id.startswith("retailklip:") and tower_cfg.embed_dim == dim
    for (name, a), b in zip(
        served.state_dict().items(), trained.state_dict().values(), strict=True
    ):
        assert a.shape == b.shape and bool((a == b).all()), name


def test_reading_settings_does_not_load_torch() -> None:
    # `retailklip migrate`, `gc-blobs` and migrations/env.py read settings without a model.
    code = "import sys, app.settings, app.db.migrate; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
