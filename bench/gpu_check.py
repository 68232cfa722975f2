"""GPU check: the CUDA paths of serving and training, measured in a few minutes, one table.

1. embeddings: the serving encoder on CUDA (channels_last, fp16 autocast) against the same
   model on CPU (fp32), cosine per photo;
2. encoder throughput at batch 1 / 8 / 32 / 128 (host tensor in, normalised vectors out);
3. POST /classify throughput at concurrency 32 through `retailklip serve` on the device;
4. one training epoch (`training.loop.train`: AMP + GradScaler + channels_last on CUDA) on the
   synthetic smoke set, and the checkpoint it writes loaded back on CPU.

Without a GPU it stops at once with exit code 2 and says why; `--device cpu` runs the same
steps on the CPU at a smaller size (a dry run of the script itself). Run it through
bench/gpu_check.sh, which bounds the whole run in time.

    bench/gpu_check.sh [--device cuda|cpu] [--model M] [--photos DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from tests.support.paths import GROCERY
from tests.support.reports import percentile, table
from tests.support.servers import quiet_server

NO_GPU = 2
MIN_COSINE = 0.995  # fp16 autocast against fp32, per photo


def require_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        build = torch.version.cuda or "none (a CPU-only build of torch)"
        print(
            f"gpu_check: no CUDA device: torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, CUDA build {build}). "
            "Run it on a GPU machine, or with --device cpu for a dry run.",
            file=sys.stderr,
        )
        raise SystemExit(NO_GPU)


def photos(folder: Path | None, count: int, work: Path) -> list[Path]:
    """Real shelf photos if there are any, else the synthetic smoke set."""
    root = folder or GROCERY / "test"
    found = sorted(root.rglob("*.jpg")) + sorted(root.rglob("*.png"))
    if not found:
        from training.synthetic import make_synthetic_folder

        make_synthetic_folder(work / "photos", classes=8, per_class=max(2, count // 8), size=96)
        found = sorted((work / "photos").rglob("*.png"))
    step = max(1, len(found) // count)
    return found[::step][:count]


def check_embeddings(model: str, device: str, paths: list[Path]) -> tuple[list[object], bool]:
    from app.encoder.torch_encoder import load_encoder

    begin = time.perf_counter()
    on_device, on_cpu = load_encoder(model, device), load_encoder(model, "cpu")
    images = [Image.open(p).convert("RGB") for p in paths]
    a = np.concatenate([on_device.embed(images[i : i + 32]) for i in range(0, len(images), 32)])
    b = np.concatenate([on_cpu.embed(images[i : i + 32]) for i in range(0, len(images), 32)])
    cosine = (a * b).sum(axis=1)
    ok = bool(cosine.min() >= MIN_COSINE)
    label = f"{device} (fp16 autocast) vs cpu fp32" if device == "cuda" else "cpu vs cpu (dry)"
    result = f"cosine min {cosine.min():.5f}, mean {cosine.mean():.5f} over {len(paths)} photos"
    row = ["embeddings", label, result, f"{time.perf_counter() - begin:.1f}"]
    return row, ok


def check_throughput(model: str, device: str, batches: list[int]) -> list[list[object]]:
    from app.encoder.torch_encoder import load_encoder

    encoder = load_encoder(model, device)
    size = encoder.preprocess.image_size
    rows = []
    for batch in batches:
        tensor = torch.rand(batch, 3, size, size)
        for _ in range(3):  # warm-up: kernel choice, allocator
            encoder.embed_tensor(tensor)
        runs = max(3, min(50, 2048 // batch)) if device == "cuda" else 3
        begin = time.perf_counter()
        for _ in range(runs):
            encoder.embed_tensor(tensor)  # returns numpy: the device work is finished
        seconds = (time.perf_counter() - begin) / runs
        rows.append(
            [
                f"encoder batch {batch}",
                f"{device}, {size}px",
                f"{1000 * seconds:.1f} ms/batch, {batch / seconds:.1f} images/s",
                f"{seconds * runs:.1f}",
            ]
        )
    return rows


def check_classify(model: str, device: str, paths: list[Path], requests: int) -> list[object]:
    work = Path(tempfile.mkdtemp(prefix="gpu-check-serve-"))
    settings = {"data_dir": work / "data", "model": model, "device": device}
    server = quiet_server(settings, work / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for i, path in enumerate(paths[:20]):
                files = [("images", (path.name, path.read_bytes(), "image/jpeg"))]
                client.post("/products", data={"sku": f"p{i}", "name": path.stem}, files=files)
            bodies = [p.read_bytes() for p in paths]

            def one(i: int) -> float:
                begin = time.perf_counter()
                answer = client.post(
                    "/classify", files={"image": ("q.jpg", bodies[i % len(bodies)])}
                )
                answer.raise_for_status()
                return time.perf_counter() - begin

            begin = time.perf_counter()
            with ThreadPoolExecutor(32) as pool:
                times = list(pool.map(one, range(requests)))
            wall = time.perf_counter() - begin
            text = client.get("/metrics").text
        count = _metric(text, "retailklip_encoder_batch_size_count")
        total = _metric(text, "retailklip_encoder_batch_size_sum")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result = (
        f"{requests / wall:.0f} req/s, p50 {1000 * statistics.median(times):.0f} ms, "
        f"p99 {1000 * percentile(times, 0.99):.0f} ms, mean forward batch {total / count:.1f}"
    )
    return ["/classify concurrency 32", device, result, f"{wall:.1f}"]


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise RuntimeError(f"{name} not in /metrics")


def check_training(device: str, work: Path) -> list[object]:
    from app.encoder.torch_encoder import load_encoder
    from training.loop import TrainConfig, train
    from training.synthetic import make_synthetic_folder

    data = make_synthetic_folder(work / "train", classes=8, per_class=16, size=96)
    out = work / "gpu-check.safetensors"
    cfg = TrainConfig(
        data=str(data),
        out=str(out),
        work_dir=str(work / "run"),
        model="efficientnet-lite0",
        image_size=128,
        epochs=1,
        batch_size=32,
        per_class=4,
        device=device,
        resume=False,
    )
    begin = time.perf_counter()
    summary = train(cfg)
    seconds = time.perf_counter() - begin
    epoch = summary["history"][-1]
    reloaded = load_encoder(str(out), "cpu")  # the checkpoint the service would load
    amp = "AMP fp16 + GradScaler + channels_last" if device == "cuda" else "fp32 (no AMP on CPU)"
    result = (
        f"{amp}: {epoch['steps']} steps, {epoch['images_per_s']} images/s, "
        f"loss {epoch['loss']:.2f}; checkpoint reloads on cpu ({reloaded.embed_dim}-d)"
    )
    return ["train 1 epoch (synthetic)", device, result, f"{seconds:.1f}"]


def progress(row: list[object]) -> list[object]:
    print(" | ".join(str(cell) for cell in row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--model", default=None, help="default: the service's default model")
    parser.add_argument("--photos", type=Path, default=None, help="folder of photos to embed")
    args = parser.parse_args(argv)
    require_device(args.device)
    if args.model is None:
        from app.settings import default_model

        args.model = default_model()
    cuda = args.device == "cuda"
    if cuda:
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        shots = photos(args.photos, 64 if cuda else 16, work)
        rows: list[list[object]] = []
        embed_row, parity = check_embeddings(args.model, args.device, shots)
        rows.append(progress(embed_row))
        for row in check_throughput(args.model, args.device, [1, 8, 32, 128] if cuda else [1, 8]):
            rows.append(progress(row))
        rows.append(progress(check_classify(args.model, args.device, shots, 640 if cuda else 64)))
        rows.append(progress(check_training(args.device, work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(("check", "device", "result", "s"), rows))
    verdict = "PASS" if parity else f"FAIL (embedding cosine under {MIN_COSINE})"
    print(f"\nverdict: {verdict}")
    return 0 if parity else 1


if __name__ == "__main__":
    raise SystemExit(main())
