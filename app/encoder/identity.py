"""What a model setting serves, known without building its tower: model id, preprocessing and
embedding size. Light on purpose (no torch): a CPU replica whose ONNX graph is already cached
serves from these and the graph alone (app/encoder/loading.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from app.encoder.model_spec import ModelLoadError, ModelSpec, parse_model_spec
from app.encoder.preprocess import PreprocessConfig

# The verdict tiers calibrated for the model, as JSON text the use-case layer reads.
TIERS_KEY = "tiers"

CHECKPOINT_FORMAT = "retailklip-encoder/1"
OFFLINE_MODEL_ID = "efficientnet-lite0:in1k"
OFFLINE_EMBED_DIM = 1280


@dataclass(frozen=True)
class ModelIdentity:
    model_id: str
    preprocess: PreprocessConfig
    embed_dim: int


def offline_preprocess(image_size: int = 224) -> PreprocessConfig:
    # timm's pretrained config for tf_efficientnet_lite0: mean = std = 0.5, crop 0.875.
    return PreprocessConfig(image_size=image_size, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.875)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_model_id(path: Path) -> str:
    """A checkpoint's id carries its content digest: new weights, new id (and new ONNX file)."""
    return f"retailklip:{file_digest(path)[:16]}"


def checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors metadata of a RetailKLIP checkpoint (JSON strings), tensors unread."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata: dict[str, str] = handle.metadata() or {}
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ModelLoadError(f"{path} is not a RetailKLIP encoder checkpoint ({CHECKPOINT_FORMAT})")
    return metadata


def identify(spec: ModelSpec) -> ModelIdentity | None:
    """The identity of a checkpoint file or of the offline backbone; None for an OpenCLIP
    tower (its preprocessing comes from open_clip's tables)."""
    if spec.kind == "offline":
        return ModelIdentity(OFFLINE_MODEL_ID, offline_preprocess(), OFFLINE_EMBED_DIM)
    if spec.kind == "checkpoint" and spec.path is not None:
        if not spec.path.is_file():
            raise ModelLoadError(f"checkpoint file not found: {spec.path}")
        metadata = checkpoint_metadata(spec.path)
        return ModelIdentity(
            checkpoint_model_id(spec.path),
            PreprocessConfig.from_dict(json.loads(metadata["preprocess"])),
            int(json.loads(metadata["tower"])["embed_dim"]),
        )
    return None


def model_tiers(model: str) -> str | None:
    """The verdict tiers calibrated for a model setting (its checkpoint's metadata, JSON text
    for app/recognition/tiers.py), if any."""
    spec = parse_model_spec(model)
    if spec.kind != "checkpoint" or spec.path is None or not spec.path.is_file():
        return None
    return checkpoint_metadata(spec.path).get(TIERS_KEY) or None
