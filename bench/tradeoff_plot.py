"""Plot in-domain against out-of-domain top-1 from `bench/recognition.py --json` files.

    python -m bench.tradeoff_plot runs/bench/rec_*.json --out docs/recognition_tradeoff.png

Every row becomes a point (x: Grocery Store catalogue -> shelf top-1, the data the finetuned
models were trained on; y: GroZi-120 dev top-1 at <= 20 crops per product, never trained on).
Points of one model share a colour (one per training run, `-aALPHA` WiSE-FT exports included). The
frozen backbone and the previously shipped model are drawn as stars at their best GroZi point.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from training.plots import plot_tradeoff

ROOT = Path(__file__).resolve().parent.parent

STARS = {"efficientnet-lite0": "frozen backbone", "retailklip-lite0-grocery": "shipped before"}


def label(row: dict) -> str:
    views = len(row["views"])
    pipe = f"{row['resize']}/{row['pool']}{'/flip' if row['flip'] else ''}/{views}v"
    return f"{Path(row['model']).stem} {pipe}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/recognition_tradeoff.png")
    parser.add_argument("--metric", default="grozi<=20")
    args = parser.parse_args(argv)
    rows = [row for f in args.files for row in json.loads(f.read_text())]
    points, stars = [], []
    for name, star in STARS.items():
        mine = [r for r in rows if r["model"] == name]
        if mine:
            best = max(mine, key=lambda r: r[args.metric][0])
            stars.append((f"{star} ({label(best)})", best["grocery"][0], best[args.metric][0]))
    for row in rows:
        if row["model"] in STARS:
            continue
        # A sweep's checkpoints are named <run>-a<alpha>: one series per run.
        series = re.sub(r"-a[0-9.]+$", "", Path(row["model"]).stem)
        points.append(
            {
                "label": label(row).split(" ", 1)[1]
                if "-a" not in row["model"]
                else Path(row["model"]).stem.rsplit("-", 1)[-1],
                "x": row["grocery"][0],
                "y": row[args.metric][0],
                "series": series,
            }
        )
    plot_tradeoff(points, args.out, stars, f"GroZi-dev ({args.metric}) vs Grocery Store")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
