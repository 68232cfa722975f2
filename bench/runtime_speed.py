"""Encoder speed per inference runtime (PyTorch, ONNX Runtime fp32 and INT8), one run.

    nice -n 10 .venv/bin/python -m bench.runtime_speed [--model M] [--rounds 30]

Real in-store photos of the Grocery Store data set are preprocessed once by the service's
transform; then, for batch 1 and batch 8, every round times one forward pass of each runtime in
turn (rotating the order), so load on the machine falls on all of them alike. Prints p50 ms per
pass, images/s, and the speed-up against PyTorch measured in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from app.encoder.decode import decode_image
from app.encoder.loading import load_service_encoder
from app.encoder.preprocess import eval_pixels
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

RUNTIMES = ("torch", "onnx", "onnx-int8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="retailklip-lite0-shelf")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--threads",
        type=int,
        help="intra-op threads for both engines (default: PyTorch's, one per core); 1 compares "
        "the engines without thread-pool effects on a busy machine",
    )
    parser.add_argument("--grocery", type=Path, default=ROOT.parent / "shared/data/grocery-store")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # what ONNX Runtime sessions take
    with tempfile.TemporaryDirectory() as tmp:
        encoders = {
            rt: load_service_encoder(
                Settings(model=args.model, runtime=rt, device="cpu", data_dir=Path(tmp))
            )
            for rt in RUNTIMES
        }
    first = encoders["torch"]
    photos = sorted((args.grocery / "test").rglob("*.jpg"))
    photos = photos[:: max(1, len(photos) // (8 * args.rounds))][: 8 * args.rounds]
    pixels = np.stack(
        [eval_pixels(decode_image(p.read_bytes(), 10**8), first.preprocess) for p in photos]
    )
    times: dict[tuple[str, int], list[float]] = {(rt, b): [] for rt in RUNTIMES for b in (1, 8)}
    for encoder in encoders.values():  # warm-up
        encoder.embed_pixels(pixels[:8])
        encoder.embed_pixels(pixels[:1])
    for r in tqdm(range(args.rounds), desc="rounds"):
        order = RUNTIMES[r % 3 :] + RUNTIMES[: r % 3]
        for batch in (1, 8):
            chunk = pixels[r * 8 : r * 8 + batch]
            for rt in order:
                begin = time.perf_counter()
                encoders[rt].embed_pixels(chunk)
                times[(rt, batch)].append(time.perf_counter() - begin)
    print(
        f"\nmodel {first.model_id} ({args.model}), {torch.get_num_threads()} threads, "
        f"{args.rounds} rounds, forward pass on preprocessed real photos"
    )
    print("| runtime | batch | p50 ms / pass | images/s | speed vs torch |")
    print("| --- | --- | --- | --- | --- |")
    for batch in (1, 8):
        base = statistics.median(times[("torch", batch)])
        for rt in RUNTIMES:
            p50 = statistics.median(times[(rt, batch)])
            print(f"| {rt} | {batch} | {1000 * p50:.1f} | {batch / p50:.1f} | {base / p50:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
