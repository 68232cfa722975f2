"""Start-up of `retailklip serve` on the CPU: PyTorch, ONNX Runtime exporting its graph (a first
start), and ONNX Runtime from the cached graph (every later start: no torch in the process).

For each way, `--rounds` fresh server processes (SQLite, empty catalogue, one shared ONNX cache
per way) are started in turn; the bench prints the median time to a ready `/readyz`, the CPU
seconds the process used until then, its resident memory when ready and after classifying a few
shelf photos, and each as a ratio against PyTorch in the same run.

    .venv/bin/python -m bench.startup [--model retailklip-lite0-shelf] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from tests.support.photos import grocery_photos
from tests.support.reports import table
from tests.support.servers import quiet_server

WAYS = {
    "torch": "PyTorch",
    "onnx-export": "ONNX Runtime, first start (exports the graph)",
    "onnx-cached": "ONNX Runtime, graph cached (no torch)",
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_once(way: str, model: str, root: Path, photos: list[bytes]) -> dict[str, float]:
    onnx_dir = root / "onnx-cached" if way == "onnx-cached" else root / f"onnx-{time.time_ns()}"
    settings = {
        "model": model,
        "device": "cpu",
        "runtime": "torch" if way == "torch" else "onnx",
        "data_dir": root / f"data-{time.time_ns()}",
        "onnx_dir": onnx_dir,
    }
    server = quiet_server(settings, root / "server.log")
    begin = time.monotonic()
    server.start()
    try:
        ready_s = time.monotonic() - begin
        ready = httpx.get(f"{server.url}/readyz", timeout=30).json()
        if ready["runtime"] != settings["runtime"]:
            raise SystemExit(f"{way}: the server runs {ready['runtime']}, not as asked")
        cpu, rss = cpu_seconds(server.pid), server.rss_mb()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for photo in photos:
                client.post("/classify", files={"image": ("q.jpg", photo)}).raise_for_status()
        return {
            "ready_s": ready_s,
            "cpu_s": cpu,
            "rss_mb": rss,
            "rss_after_mb": server.rss_mb(),
        }
    finally:
        server.stop()
        if way == "onnx-export":
            shutil.rmtree(onnx_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="retailklip-lite0-shelf")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    photos = grocery_photos(limit=8)
    root = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    results: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    try:
        # Fills the cached way's graph directory (an export), and the disk cache of the packages.
        start_once("onnx-cached", args.model, root, [])
        for _ in tqdm(range(args.rounds), desc="rounds"):
            for way in WAYS:  # interleaved: the machine's load falls on every way alike
                results[way].append(start_once(way, args.model, root, photos))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    medians = {
        way: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for way, runs in results.items()
    }
    base = medians["torch"]
    rows = [
        [
            WAYS[way],
            f"{m['ready_s']:.2f} s ({m['ready_s'] / base['ready_s']:.2f}x)",
            f"{m['cpu_s']:.2f} s ({m['cpu_s'] / base['cpu_s']:.2f}x)",
            f"{m['rss_mb']:.0f} MB ({m['rss_mb'] / base['rss_mb']:.2f}x)",
            f"{m['rss_after_mb']:.0f} MB ({m['rss_after_mb'] / base['rss_after_mb']:.2f}x)",
        ]
        for way, m in medians.items()
    ]
    print(f"\nmodel {args.model}, {args.rounds} rounds, medians (ratio against PyTorch)")
    headers = (
        "way",
        "start to ready",
        "CPU until ready",
        "RSS when ready",
        f"RSS after {len(photos)} classifications",
    )
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
