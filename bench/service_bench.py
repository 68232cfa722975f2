"""Catalogue-to-shelf accuracy and /classify latency through the real HTTP API.

Starts `retailklip serve` on a fresh data directory (SQLite), registers the 81 iconic catalogue
images of the Grocery Store data set, classifies the in-store test photos, then measures /classify
latency at concurrency 1 and 8 (the second against the first, measured in the same run).

    .venv/bin/python -m bench.service_bench [--model retailklip-lite0-grocery] [--limit N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tqdm import tqdm

from tests.support.paths import GROCERY as DATA
from tests.support.servers import LiveServer, settings_env
from training.data import grocery_classes, read_grocery
from training.plots import plot_per_class

REPO = Path(__file__).resolve().parents[1]


def start(model: str, data_dir: Path, port: int) -> LiveServer:
    """`retailklip serve` on `port`, ready (the test suite's server; its log in `data_dir`)."""
    env = settings_env({"data_dir": data_dir, "model": model, "log_level": "warning"})
    return LiveServer(env=env, port=port, log_path=data_dir / "server.log").start()


def classes(root: Path) -> dict[int, tuple[str, Path]]:
    """class id -> (name, iconic catalogue image), from the project's Grocery Store reader."""
    return {c.fine_id: (c.name, root / c.iconic) for c in grocery_classes(root)}


def queries(root: Path, split: str) -> list[tuple[Path, int]]:
    """(photo, class id) of a Grocery Store split, from the project's reader."""
    ids = {c.name: c.fine_id for c in grocery_classes(root)}
    return [(sample.path, ids[sample.label]) for sample in read_grocery(root, split)]


def register_catalogue(client: httpx.Client, catalogue: dict[int, tuple[str, Path]]) -> None:
    """One product per class, its iconic image as the reference (sku = class id)."""
    for class_id, (name, path) in tqdm(catalogue.items(), desc="register"):
        client.post(
            "/products",
            data={"sku": str(class_id), "name": name},
            files={"images": (path.name, path.read_bytes())},
        ).raise_for_status()


def latency_run(client: httpx.Client, photos: list[Path], concurrency: int) -> dict[str, float]:
    def one(photo: Path) -> float:
        begin = time.perf_counter()
        response = client.post("/classify", files={"image": (photo.name, photo.read_bytes())})
        response.raise_for_status()
        return time.perf_counter() - begin

    begin = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        times = sorted(pool.map(one, photos))
    wall = time.perf_counter() - begin
    return {
        "p50_ms": 1000 * statistics.median(times),
        "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))],
        "req_per_s": len(photos) / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="retailklip-lite0-grocery")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--limit", type=int, default=0, help="classify only the first N test photos"
    )
    parser.add_argument("--latency-requests", type=int, default=160)
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--out", type=Path, default=REPO / "runs/bench")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    catalogue = classes(args.data)
    tests = queries(args.data, "test")
    if args.limit:
        tests = tests[:: max(1, len(tests) // args.limit)][: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        server = start(args.model, Path(tmp), args.port)
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=120)
            register_catalogue(client, catalogue)
            model = client.get("/readyz").json()["model"]
            hits1: dict[int, list[bool]] = defaultdict(list)
            hits5 = 0
            best: list[tuple[float, bool]] = []  # (top score, top-1 correct) for calibration
            for photo, label in tqdm(tests, desc="classify"):
                answer = client.post(
                    "/classify",
                    files={"image": (photo.name, photo.read_bytes())},
                    data={"top_k": "5"},
                ).json()
                skus = [int(m["sku"]) for m in answer["matches"]]
                hits1[label].append(bool(skus) and skus[0] == label)
                best.append((answer["matches"][0]["score"], skus[0] == label))
                hits5 += label in skus
            top1 = sum(sum(v) for v in hits1.values()) / len(tests)
            per_class = {c: sum(v) / len(v) for c, v in hits1.items()}
            photos = [p for p, _ in tests][: args.latency_requests]
            latency_run(client, photos[:16], 1)  # warm-up
            lat1 = latency_run(client, photos, 1)
            lat8 = latency_run(client, photos, 8)
        finally:
            server.stop()
    print(
        f"\nmodel {model}: catalogue -> shelf over HTTP, {len(catalogue)} products, "
        f"{len(tests)} shelf photos"
    )
    print(
        f"| metric | value |\n| --- | --- |\n| top-1 | {100 * top1:.1f}% |"
        f"\n| top-5 | {100 * hits5 / len(tests):.1f}% |"
        f"\n| mean per-class top-1 | {100 * statistics.mean(per_class.values()):.1f}% |"
    )
    print(
        f"\n/classify latency, {len(photos)} requests each\n"
        "| concurrency | p50 ms | p95 ms | req/s | throughput vs c=1 |\n"
        "| --- | --- | --- | --- | --- |"
    )
    for level, lat in ((1, lat1), (8, lat8)):
        print(
            f"| {level} | {lat['p50_ms']:.1f} | {lat['p95_ms']:.1f} | {lat['req_per_s']:.1f} | "
            f"{lat['req_per_s'] / lat1['req_per_s']:.2f}x |"
        )
    print(
        "\nunknown threshold calibration (min_score): answered = best score >= threshold\n"
        "| threshold | answered | top-1 among answered |\n| --- | --- | --- |"
    )
    for threshold in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
        answered = [ok for score, ok in best if score >= threshold]
        share = len(answered) / len(best)
        accuracy = sum(answered) / len(answered) if answered else float("nan")
        print(f"| {threshold:.1f} | {100 * share:.1f}% | {100 * accuracy:.1f}% |")
    rows = [(catalogue[c][0], accuracy) for c, accuracy in per_class.items()]
    path = plot_per_class(rows, args.out / "per_class.png", "top-1 per class (catalogue -> shelf)")
    print(f"per-class plot: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
