"""What big uploads cost a server: resident memory under six decompression-bomb PNGs sent at
once, and the latency of real 12 MP phone photos against the same photos shrunk by the client.

For each checkout (`--baseline REV` adds a `git worktree` of an older commit, served by this
venv), one fresh server (SQLite, the shipped model, ONNX Runtime) is started, one product is
registered, then:

- **bombs**: six all-zero PNGs of 6000 x 6600 px (about 112 KB each, under the default
  `MAX_IMAGE_PIXELS`) go to `POST /classify` together, twice; the table gives RSS before, the
  kernel's high-water mark during, and RSS 5 s after the last answer;
- **photos**: each corner-shop photo (12 MP, evaluation data: read in place, never kept) and its
  copy shrunk to 1024 px on the longer side by the client are classified in turn, `--rounds`
  times; the table gives the medians and their ratio.

    .venv/bin/python -m bench.decode_memory [--baseline 050b934] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image
from tqdm import tqdm

from tests.support.paths import GROCERY, REPO, SHARED
from tests.support.reports import table
from tests.support.servers import LiveServer, quiet_server

CORNERSHOP = SHARED / "data/cornershop-dev/photos"
BANANA = GROCERY / "iconic-images-and-descriptions/Fruit/Banana/Banana_Iconic.jpg"
BOMBS = 6


def bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 6600)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def shrunk(data: bytes, longer: int = 1024) -> bytes:
    image = Image.open(io.BytesIO(data))
    image.thumbnail((longer, longer), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def classify(client: httpx.Client, data: bytes) -> float:
    begin = time.perf_counter()
    answer = client.post("/classify", files={"image": ("p.jpg", data)})
    answer.raise_for_status()
    return time.perf_counter() - begin


def measure(server: LiveServer, photos: list[bytes], rounds: int) -> dict[str, float]:
    bomb = bomb_png()
    with httpx.Client(base_url=server.url, timeout=300) as client:
        client.post(
            "/products",
            data={"sku": "banana", "name": "Banana"},
            files={"images": BANANA.open("rb")},
        ).raise_for_status()
        classify(client, photos[0])  # warm
        rss_before = server.rss_mb()
        with ThreadPoolExecutor(BOMBS) as pool:
            for _ in range(2):
                list(pool.map(lambda _: classify(client, bomb), range(BOMBS)))
        peak = server.peak_rss_mb()
        time.sleep(5)
        rss_after = server.rss_mb()
        full, small = [], []
        little = [shrunk(p) for p in photos]
        for _ in tqdm(range(rounds), desc="photos", leave=False):
            for big, tiny in zip(photos, little, strict=True):
                full.append(classify(client, big))
                small.append(classify(client, tiny))
        rss_photos = server.rss_mb()
    return {
        "rss_before": rss_before,
        "peak": peak,
        "rss_after": rss_after,
        "full_ms": 1000 * statistics.median(full),
        "small_ms": 1000 * statistics.median(small),
        "rss_photos": rss_photos,
    }


def worktree(rev: str, root: Path) -> Path:
    path = root / f"tree-{rev}"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=REPO, check=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="an older commit to measure beside")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=6)
    args = parser.parse_args(argv)
    photos = [p.read_bytes() for p in sorted(CORNERSHOP.glob("*.jpg"))[: args.photos]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="decode-memory-") as tmp:
        root = Path(tmp)
        codes = [("working tree", REPO)]
        if args.baseline:
            codes.insert(0, (args.baseline, worktree(args.baseline, root)))
        try:
            for label, code in tqdm(codes, desc="servers"):
                settings = {"data_dir": root / f"data-{len(rows)}", "device": "cpu"}
                with quiet_server(settings, root / f"{len(rows)}.log", code=code) as server:
                    server.start()
                    found = measure(server, photos, args.rounds)
                rows.append(
                    [
                        label,
                        f"{found['rss_before']:.0f}",
                        f"{found['peak']:.0f}",
                        f"{found['rss_after']:.0f}",
                        f"{found['full_ms']:.1f}",
                        f"{found['small_ms']:.1f}",
                        f"{found['full_ms'] / found['small_ms']:.2f}x",
                        f"{found['rss_photos']:.0f}",
                    ]
                )
        finally:
            for _, code in codes[:-1]:
                subprocess.run(["git", "worktree", "remove", "--force", str(code)], cwd=REPO)
    print(
        table(
            [
                "code",
                "RSS before MB",
                f"peak, {BOMBS} bombs x2 MB",
                "RSS 5 s after MB",
                "12 MP /classify ms",
                "1024 px ms",
                "ratio",
                "RSS after photos MB",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
