"""GroZi-120 dev catalogue -> shelf through the real HTTP API, as a new user would measure it.

Starts `retailklip serve` on a fresh SQLite data directory with the given model (its own serving
pipeline and reference views, as the service runs it by default), registers every GroZi-dev
product with all of its catalogue images (`POST /products`), then classifies at most N shelf crops
per product (seed 0) with `POST /classify`.

    .venv/bin/python -m bench.grozi_http [--model M] [--per-class 20]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

import httpx
from tqdm import tqdm

from bench.service_bench import start
from training.data import read_grozi

REPO = Path(__file__).resolve().parents[1]


def register_grozi(client: httpx.Client, grozi: Path) -> dict[str, list[Path]]:
    """Every GroZi-dev product with all its catalogue images (sku `grozi-<id>`); returns them."""
    catalogue: dict[str, list[Path]] = defaultdict(list)
    for sample in read_grozi(grozi, "catalogue"):
        catalogue[sample.label].append(sample.path)
    for product, paths in tqdm(catalogue.items(), desc="register"):
        client.post(
            "/products",
            data={"sku": f"grozi-{product}", "name": f"GroZi {product}"},
            files=[("images", (p.name, p.read_bytes())) for p in paths],
        ).raise_for_status()
    return catalogue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="retailklip-lite0-grocery")
    parser.add_argument("--grozi", type=Path, default=REPO.parent / "shared/data/grozi120-dev")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--port", type=int, default=8798)
    args = parser.parse_args(argv)
    shelf = read_grozi(args.grozi, "shelf", per_class=args.per_class, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        server = start(args.model, Path(tmp), args.port)
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=120)
            catalogue = register_grozi(client, args.grozi)
            ready = client.get("/readyz").json()
            hit1 = hit5 = 0
            for sample in tqdm(shelf, desc="classify"):
                answer = client.post(
                    "/classify",
                    files={"image": (sample.path.name, sample.path.read_bytes())},
                    data={"top_k": "5"},
                ).json()
                skus = [m["sku"] for m in answer["matches"]]
                hit1 += bool(skus) and skus[0] == f"grozi-{sample.label}"
                hit5 += f"grozi-{sample.label}" in skus
        finally:
            server.stop()
    print(
        f"\nmodel {ready['model']} ({args.model}): {len(catalogue)} products, "
        f"{sum(map(len, catalogue.values()))} catalogue images, {ready['index_vectors']} vectors, "
        f"{len(shelf)} shelf crops (<= {args.per_class} per product, seed 0)"
    )
    print(
        f"| top-1 | top-5 |\n| --- | --- |\n| {hit1 / len(shelf):.1%} | {hit5 / len(shelf):.1%} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
