"""WiSE-FT after the fact: the shipped shelf model's weights moved back towards the ImageNet
backbone it was finetuned from, (1-a)*start + a*finetuned, measured like every model.

    .venv/bin/python -m bench.wise_ft [--alpha 0.25 0.5 0.75] [--query-stride 1]

For each alpha an interpolated checkpoint (same tower, pooling, preprocessing and reference
views; training.loop.interpolate_weights) is written to a temporary directory and scored by
bench.recognition (Grocery Store test, GroZi-dev <= 5 and <= 20), with alpha 1 (the shipped
model) in the same table. GroZi-dev only measures here: nothing is fitted to it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from app.encoder.backbones import build_tower, load_offline_backbone
from app.encoder.checkpoint import load_checkpoint, save_checkpoint
from app.encoder.model_spec import BUILTIN_CHECKPOINTS
from bench.recognition import main as recognition
from training.loop import interpolate_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="retailklip-lite0-shelf")
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--query-stride", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-wise-ft-") as tmp:
        models = [args.model]
        for alpha in args.alpha:
            tower, cfg, pre, info = load_checkpoint(BUILTIN_CHECKPOINTS[args.model])
            start = build_tower(cfg)
            backbone, _ = load_offline_backbone(pre.image_size)
            start.load_state_dict(backbone.state_dict(), strict=True)
            interpolate_weights(tower, start, alpha)
            path = Path(tmp) / f"wise-ft-{alpha:g}.safetensors"
            save_checkpoint(path, tower, cfg, pre, {**info, "wise_ft_alpha": alpha})
            models.append(str(path))
        view_names = ",".join(pre.reference_views) or "none"
        command = [arg for m in models for arg in ("--model", m)]
        command += ["--pipeline", f"{pre.resize_mode},{cfg.pool},0", "--views", view_names]
        command += ["--query-stride", str(args.query_stride), "--cache", str(Path(tmp) / "c")]
        return recognition(command)


if __name__ == "__main__":
    raise SystemExit(main())
