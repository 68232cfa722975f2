"""Encoder forward cost per photo: EfficientNet-Lite towers at their native sizes, and any
checkpoints, against Lite0 at 160 px (the shipped model's tower and size), in the same run.

    .venv/bin/python -m bench.tower_cost [--model retailklip-lite0-shelf --model PATH ...]

Towers are timm's (random weights: the cost does not depend on them); checkpoints go through the
service's PyTorch encoder on one real photo. Batch 1, 2 threads, every configuration timed in
turn for --rounds rounds (interleaved, so a busy machine slows all alike); medians and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import timm
import torch
from PIL import Image

from app.encoder.torch_encoder import load_encoder
from tests.support.paths import GROCERY

TOWERS = (
    ("tf_efficientnet_lite0", 160),
    ("tf_efficientnet_lite1", 240),
    ("tf_efficientnet_lite2", 260),
)


def tower_run(name: str, size: int) -> Callable[[], object]:
    model = timm.create_model(name, pretrained=False, num_classes=0).eval()
    pixels = torch.zeros(1, 3, size, size)
    return lambda: model(pixels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", default=[], help="checkpoint (repeatable)")
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    runs = {f"{name} @ {size} px": tower_run(name, size) for name, size in TOWERS}
    photo = Image.open(sorted((GROCERY / "test").rglob("*.jpg"))[0]).convert("RGB")
    for model in args.model:
        encoder = load_encoder(model, "cpu")
        size = encoder.preprocess.image_size
        runs[f"{model} @ {size} px"] = lambda e=encoder: e.embed([photo])
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        for run in runs.values():
            run()
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1000)
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = next(iter(medians.values()))
    print("| encoder | ms per photo | vs Lite0 @ 160 px |\n|---|---|---|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.1f} | {ms / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
