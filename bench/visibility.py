"""How soon a write on one replica is findable on another: push (LISTEN/NOTIFY) against poll.

Two `retailklip serve` replicas on one fresh PostgreSQL database (the suite's harness), the
offline backbone, a catalogue of Grocery Store iconic images. A writer registers products on
replica A one at a time, each with an image nobody has registered yet; after each
acknowledged write a prober asks replica B (`POST /classify`, top_k 1) until B names the new
product, while a third thread keeps B busy classifying. Seconds from A's acknowledgement to
B's first right answer, p50 / p99 / max, with B following by push (the default) and by poll
only (`RETAILKLIP_LOG_PUSH=false`, SYNC_INTERVAL_S=2), in one run.

    .venv/bin/python -m bench.visibility [--writes 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from tqdm import tqdm

from tests.support.databases import create_pg_database, drop_pg_database
from tests.support.paths import GROCERY
from tests.support.reports import table
from tests.support.servers import running_server


def photos(count: int) -> list[Path]:
    """Distinct Grocery Store photos: each write's reference, and later its query."""
    found = sorted((GROCERY / "train").rglob("*.jpg"))
    if len(found) < count:
        raise SystemExit(f"only {len(found)} photos under {GROCERY / 'train'}")
    return found[:: max(1, len(found) // count)][:count]


def measure(push: bool, writes: list[Path], root: Path) -> list[float]:
    url = create_pg_database("retailklip_bench")
    try:
        b_settings = {"database_url": url, "log_push": push, "sync_interval_s": 2.0}
        for replica in ("a", "b"):
            (root / replica).mkdir(parents=True)
        with (
            running_server(root / "a", database_url=url, log_level="warning") as a,
            running_server(root / "b", log_level="warning", **b_settings) as b,
            httpx.Client(base_url=a.url, timeout=60) as on_a,
            httpx.Client(base_url=b.url, timeout=60) as on_b,
        ):
            stop = threading.Event()

            def load() -> None:  # B keeps classifying meanwhile
                with httpx.Client(base_url=b.url, timeout=60) as busy:
                    data = writes[0].read_bytes()
                    while not stop.is_set():
                        busy.post("/classify", files={"image": ("q.jpg", data)})

            loader = threading.Thread(target=load, daemon=True)
            loader.start()
            delays = []
            try:
                for i, path in enumerate(tqdm(writes, desc="push" if push else "poll")):
                    sku, data = f"p{i}", path.read_bytes()
                    on_a.post(
                        "/products",
                        data={"sku": sku, "name": sku},
                        files={"images": ("r.jpg", data)},
                    ).raise_for_status()
                    acknowledged = time.monotonic()
                    while True:
                        answer = on_b.post(
                            "/classify", files={"image": ("q.jpg", data)}, data={"top_k": "1"}
                        ).json()
                        if answer["matches"] and answer["matches"][0]["sku"] == sku:
                            delays.append(time.monotonic() - acknowledged)
                            break
            finally:
                stop.set()
                loader.join(10)
        return delays
    finally:
        drop_pg_database(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--poll-writes", type=int, default=50, help="the poll side is slow")
    args = parser.parse_args(argv)
    chosen = photos(args.writes)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-visibility-") as tmp:
        for push, count in ((True, args.writes), (False, args.poll_writes)):
            delays = measure(push, chosen[:count], Path(tmp) / ("push" if push else "poll"))
            ms = np.array(delays) * 1000
            rows.append(
                [
                    "push (LISTEN/NOTIFY)" if push else "poll only (every 2 s)",
                    len(delays),
                    f"{statistics.median(ms):.0f}",
                    f"{np.percentile(ms, 99):.0f}",
                    f"{ms.max():.0f}",
                ]
            )
    print(table(("replica B follows by", "writes", "p50 ms", "p99 ms", "max ms"), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
