"""The RetailKLIP encoder checkpoint format: one safetensors file, config inside.

Tensors are the image tower's state dict; the safetensors metadata carries the open_clip tower
config, the preprocessing and free-form training info as JSON strings. Nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from app.encoder.backbones import TowerConfig, build_tower
from app.encoder.identity import CHECKPOINT_FORMAT as FORMAT
from app.encoder.identity import TIERS_KEY, checkpoint_metadata
from app.encoder.model_spec import ModelLoadError
from app.encoder.preprocess import PreprocessConfig
from app.storage.files import atomic_path


def save_checkpoint(
    path: str | Path,
    tower: nn.Module,
    tower_cfg: TowerConfig,
    preprocess: PreprocessConfig,
    info: dict[str, Any] | None = None,
    tiers: str | None = None,
) -> Path:
    """Write atomically (temp file, fsync, rename) so a crash never leaves half a checkpoint."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tower.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "tower": json.dumps(tower_cfg.to_dict()),
        "preprocess": json.dumps(preprocess.to_dict()),
        "info": json.dumps(info or {}),
    }
    if tiers is not None:
        metadata[TIERS_KEY] = tiers
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def write_tiers(path: str | Path, tiers: str) -> Path:
    """Store calibrated verdict tiers (JSON text: app/recognition/tiers.py) in a checkpoint's
    metadata, tensors unchanged (a new file, so a new model id: app/encoder/identity.py)."""
    from safetensors.numpy import load_file
    from safetensors.numpy import save_file as save_numpy

    path = Path(path)
    metadata = {**checkpoint_metadata(path), TIERS_KEY: tiers}
    tensors = load_file(str(path))
    with atomic_path(path) as tmp:
        save_numpy(tensors, str(tmp), metadata=metadata)
    return path


def read_metadata(path: str | Path) -> tuple[TowerConfig, PreprocessConfig, dict[str, Any]]:
    metadata = checkpoint_metadata(path)
    return (
        TowerConfig.from_dict(json.loads(metadata["tower"])),
        PreprocessConfig.from_dict(json.loads(metadata["preprocess"])),
        json.loads(metadata.get("info", "{}")),
    )


def load_checkpoint(
    path: str | Path,
) -> tuple[nn.Module, TowerConfig, PreprocessConfig, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint file not found: {path}")
    tower_cfg, preprocess, info = read_metadata(path)
    tower = build_tower(tower_cfg)
    from safetensors.torch import load_file

    state = load_file(str(path), device="cpu")
    try:
        tower.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"checkpoint {path} does not fit its own tower config: {exc}") from exc
    return tower, tower_cfg, preprocess, info
