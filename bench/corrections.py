"""The curve a store would see: GroZi-dev through the HTTP API, corrected from its own shelf.

Starts `retailklip serve` (fresh SQLite, the default model, RETAILKLIP_REVIEW=all), registers
the 60 GroZi-dev products with their catalogue images, then per condition:
1. streams the EARLY first frames of every product's shelf video through POST /classify (the
   review queue keeps them);
2. a simulated clerk confirms N review items with their true product (POST /review/{id}/confirm):
   the N most uncertain (the queue's own order) or N drawn at random (seed 0);
3. measures top-1 on later frames: at most LATER frames per product, each 10 or more frames
   after the last early one;
4. undoes the corrections (DELETE the added reference images) and purges the queue.

    .venv/bin/python -m bench.corrections [--model M] [--early 3] [--later 10] [--n 0 30 60 120]

GroZi-dev is for evaluation only: nothing here is trained or calibrated on it, and the added
references live only in the bench's temporary catalogue.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import tempfile
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from bench.grozi_http import register_grozi
from tests.support.paths import REPO
from tests.support.reports import table
from tests.support.servers import LiveServer, settings_env

GAP = 10  # later frames are at least this many frames after the last early one


def frames(grozi: Path) -> dict[str, list[Path]]:
    """Product id -> its shelf crops in video order (video<k>.jpg)."""
    out: dict[str, list[Path]] = {}
    for folder in sorted((grozi / "shelf").iterdir()):
        number = lambda p: int(re.sub(r"\D", "", p.stem) or 0)  # noqa: E731
        out[folder.name] = sorted(folder.glob("*.jpg"), key=number)
    return out


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def classify(client: httpx.Client, path: Path) -> str | None:
    answer = client.post("/classify", files={"image": (path.name, path.read_bytes())}).json()
    return answer["matches"][0]["sku"] if answer["matches"] else None


def condition(
    client: httpx.Client,
    early: dict[str, list[Path]],
    later: dict[str, list[Path]],
    n: int,
    choose: str,
) -> float:
    truth = {digest(p.read_bytes()): sku for sku, ps in early.items() for p in ps}
    for paths in early.values():
        for path in paths:
            classify(client, path)
    total = sum(len(ps) for ps in early.values())
    # Kept after each answer went out: wait until the queue holds every early frame.
    for _ in range(400):
        if client.get("/review", params={"limit": 1}).json()["total"] >= total:
            break
        time.sleep(0.05)
    items = client.get("/review", params={"limit": 500}).json()["items"]
    if choose == "random":
        random.Random(0).shuffle(items)
    added: list[tuple[str, int]] = []
    for item in items[:n]:
        photo = client.get(f"/review/{item['id']}/photo").content
        sku = truth[digest(photo)]
        answer = client.post(f"/review/{item['id']}/confirm", data={"sku": sku})
        answer.raise_for_status()
        added += [(sku, i) for i in answer.json()["image_ids"]]
    hits = count = 0
    for sku, paths in tqdm(later.items(), desc=f"N={n} {choose}", leave=False):
        for path in paths:
            hits += classify(client, path) == sku
            count += 1
    for sku, image_id in added:
        client.delete(f"/products/{sku}/images/{image_id}").raise_for_status()
    client.delete("/review").raise_for_status()
    return hits / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="retailklip-lite0-shelf")
    parser.add_argument("--grozi", type=Path, default=REPO.parent / "shared/data/grozi120-dev")
    parser.add_argument("--early", type=int, default=3, help="first frames per product streamed")
    parser.add_argument("--later", type=int, default=10, help="later frames per product measured")
    parser.add_argument("--n", type=int, nargs="+", default=[0, 30, 60, 120])
    args = parser.parse_args(argv)
    video = frames(args.grozi)
    early = {f"grozi-{p}": fs[: args.early] for p, fs in video.items()}
    later = {
        f"grozi-{p}": fs[args.early - 1 + GAP :][:: max(1, len(fs) // (args.later * 2))][
            : args.later
        ]
        for p, fs in video.items()
    }
    later = {sku: fs for sku, fs in later.items() if fs}
    with tempfile.TemporaryDirectory(prefix="bench-corrections-") as tmp:
        env = settings_env(
            {"data_dir": tmp, "model": args.model, "log_level": "warning", "review": "all"}
        )
        server = LiveServer(env=env, log_path=Path(tmp) / "server.log").start()
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                catalogue = register_grozi(client, args.grozi)
                client.delete("/review").raise_for_status()
                model = client.get("/readyz").json()["model"]
                rows = []
                for n in args.n:
                    uncertain = condition(client, early, later, n, "uncertain")
                    drawn = uncertain if n == 0 else condition(client, early, later, n, "random")
                    rows.append([str(n), f"{uncertain:.1%}", f"{drawn:.1%}"])
        finally:
            server.stop()
    print(
        f"\nmodel {model} ({args.model}): {len(catalogue)} products; {args.early} early frames "
        f"each streamed ({sum(map(len, early.values()))} review items); top-1 on "
        f"{sum(map(len, later.values()))} later frames (>= {GAP} frames after the early ones)"
    )
    print(table(("corrections N", "most uncertain first", "random"), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
