"""Stalled database drill: PostgreSQL holds the tables that name search hits for `stall_s`
seconds, and the service is watched meanwhile.

A server on a fresh PostgreSQL database registers a few products; a second one times
classifications before any stall; a third starts with an empty memory of image owners, so that
every classification must name its hits in SQL while the lock is held. Then one
transaction takes `LOCK TABLE products, reference_images IN ACCESS EXCLUSIVE MODE` and holds it;
meanwhile `clients` threads classify shelf photos and a monitor calls /healthz. Expected: the
forward passes go on (the model thread does no I/O: each classification is embedded and
searched, and only its naming waits, on the thread pool), /healthz answers at once, and every
classification answers once the lock goes. The report gives /classify latency before, during
and after the stall, /healthz latency during it, and the photos the encoder embedded while
the lock was held (`retailklip_encoder_batch_size_sum` from /metrics).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.engine import make_url

from tests.support.databases import drop_pg_database
from tests.support.drills import create_database
from tests.support.paths import GROCERY, REPO
from tests.support.reports import table
from tests.support.servers import quiet_server

PRODUCTS = {
    "banana": "Fruit/Banana",
    "oatly-oat": "Packages/Oat-Milk/Oatly-Oat-Milk",
    "arla-milk": "Packages/Milk/Arla-Standard-Milk",
    "trop-apple": "Packages/Juice/Tropicana-Apple-Juice",
}


@dataclass
class Report:
    classify_ms: dict[str, list[float]] = field(default_factory=dict)  # phase -> latencies
    healthz_ms: list[float] = field(default_factory=list)  # during the stall
    embedded_during: float = 0.0
    errors: list[str] = field(default_factory=list)


def _embedded(client: httpx.Client) -> float:
    """Images the encoder has embedded so far (the batch-size histogram's sum)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("retailklip_encoder_batch_size_sum"):
            return float(line.split()[-1])
    return 0.0


def _classify(client: httpx.Client, photo: Path, out: list[float], errors: list[str]) -> None:
    begin = time.perf_counter()
    answer = client.post("/classify", files={"image": (photo.name, photo.read_bytes())})
    out.append(1000 * (time.perf_counter() - begin))
    if answer.status_code != 200:
        errors.append(f"/classify {answer.status_code} {answer.text[:80]}")


def run(stall_s: float, clients: int, model: str, code: Path = REPO) -> Report:
    url = create_database()
    report = Report()
    photos = [
        p for folder in PRODUCTS.values() for p in sorted((GROCERY / "test" / folder).glob("*.jpg"))
    ]
    try:
        with tempfile.TemporaryDirectory(prefix="stall-drill-") as tmp:
            settings = {"data_dir": Path(tmp) / "data", "database_url": url, "model": model}
            log = Path(tmp) / "server.log"
            with quiet_server(settings, log, code=code) as server:
                server.start()
                with httpx.Client(base_url=server.url, timeout=120) as client:
                    for sku, folder in PRODUCTS.items():
                        refs = sorted((GROCERY / "train" / folder).glob("*.jpg"))[:3]
                        client.post(
                            "/products",
                            data={"sku": sku, "name": sku},
                            files=[("images", (p.name, p.read_bytes())) for p in refs],
                        ).raise_for_status()
            with quiet_server(settings, log, code=code) as server:
                server.start()
                with httpx.Client(base_url=server.url, timeout=120) as client:
                    report.classify_ms["before"] = _sequential(client, photos[:8], report)
            # Restarted: a cold memory of image owners, so every naming must ask SQL.
            with quiet_server(settings, log, code=code) as server:
                server.start()
                _drill(server.url, url, stall_s, clients, photos, report)
    finally:
        drop_pg_database(url)
    return report


def _drill(
    base: str, url: str, stall_s: float, clients: int, photos: list[Path], report: Report
) -> None:
    with httpx.Client(base_url=base, timeout=120) as client:
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        locked = threading.Event()

        def stall() -> None:
            with psycopg.connect(dsn) as conn, conn.transaction():
                conn.execute("LOCK TABLE products, reference_images IN ACCESS EXCLUSIVE MODE")
                locked.set()
                time.sleep(stall_s)

        staller = threading.Thread(target=stall)
        staller.start()
        locked.wait(30)
        embedded = _embedded(client)
        during: list[float] = []
        workers = [
            threading.Thread(target=_classify, args=(client, photos[-1 - i], during, report.errors))
            for i in range(clients)
        ]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + stall_s - 0.5
        while time.monotonic() < deadline:
            begin = time.perf_counter()
            client.get("/healthz").raise_for_status()
            report.healthz_ms.append(1000 * (time.perf_counter() - begin))
            time.sleep(0.2)
        report.embedded_during = _embedded(client) - embedded
        staller.join()
        for worker in workers:
            worker.join(120)
        report.classify_ms["during"] = during
        report.classify_ms["after"] = _sequential(client, photos[8:16], report)


def _sequential(client: httpx.Client, photos: list[Path], report: Report) -> list[float]:
    latencies: list[float] = []
    for photo in photos:
        _classify(client, photo, latencies, report.errors)
    return latencies


def summary(report: Report) -> str:
    rows = [
        [
            phase,
            len(ms),
            f"{statistics.median(ms):.0f}",
            f"{max(ms):.0f}",
        ]
        for phase, ms in report.classify_ms.items()
    ]
    healthz = report.healthz_ms or [0.0]
    median, worst = statistics.median(healthz), max(healthz)
    rows.append(["/healthz during", len(healthz), f"{median:.0f}", f"{worst:.0f}"])
    return (
        table(["/classify", "requests", "median ms", "max ms"], rows)
        + f"\nphotos embedded while the lock was held: {report.embedded_during:.0f}"
    )
