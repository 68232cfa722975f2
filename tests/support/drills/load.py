"""Load drill: `--concurrency` clients (default 64) for `--seconds` (default 180) of mixed reads,
writes and classifies against `retailklip serve` on PostgreSQL.

The catalogue is seeded with real catalogue photos; classify calls send real shelf photos; writes
register products with a small JPEG, add images to them and delete them. Reported per route:
answers by status, p50 / p99 latency; for the server process: peak resident memory (the kernel's
high-water mark, VmHWM) and RSS over time. Expected: no 5xx except the designed 503 when more
than MAX_CONCURRENCY requests are in flight (or MAX_CONNECTIONS connections open), no dropped
connections, memory bounded.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.databases import drop_pg_database
from tests.support.drills import create_database
from tests.support.paths import GROCERY
from tests.support.photos import grocery_photos, noise_jpeg
from tests.support.reports import percentile, table
from tests.support.servers import quiet_server

# The designed answers to overload: the app's JSON 503 over MAX_CONCURRENCY requests in flight,
# uvicorn's plain one over MAX_CONNECTIONS open connections.
OVERLOAD = ("503 server busy, retry later", "503 overload (uvicorn)")
# Share of calls per route.
MIX = (
    ("POST /classify", 0.40),
    ("GET /products/{sku}", 0.20),
    ("GET /products", 0.15),
    ("POST /products", 0.15),
    ("POST /products/{sku}/images", 0.05),
    ("DELETE /products/{sku}", 0.05),
)


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    answers: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    seeded: list[str] = field(default_factory=list)  # never deleted: reads always find them
    mine: list[str] = field(default_factory=list)  # registered under load: may be deleted


def server_p99(metrics_text: str) -> dict[str, str]:
    """Per route, the upper bound of the latency bucket holding the server-side 99th percentile
    (from the service's own histogram): tells queueing in the server from client-side delay."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "retailklip_http_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                route = f"{sample.labels['method']} {sample.labels['route']}"
                buckets[route].append((float(sample.labels["le"]), sample.value))
    bounds = {}
    for route, points in buckets.items():
        points.sort()
        total = points[-1][1]
        le = next(le for le, count in points if count >= 0.99 * total)
        bounds[route] = f"<= {le:g} s" if le != float("inf") else "> 30 s"
    return bounds


@dataclass
class LoadReport:
    rows: list[list[object]]
    answers: dict[str, Counter[str]]
    seconds: float
    requests: int
    peak_rss_mb: float
    rss_start_mb: float
    rss_end_mb: float
    rss_samples: list[float]


def _kind(response: httpx.Response | httpx.HTTPError) -> str:
    if isinstance(response, httpx.HTTPError):
        return f"no answer ({type(response).__name__})"
    if response.status_code == 503:
        plain = response.headers.get("content-type", "").startswith("text/plain")
        return "503 overload (uvicorn)" if plain else f"503 {response.json().get('detail')}"
    return str(response.status_code)


async def _one(client: httpx.AsyncClient, tally: Tally, rng: random.Random, photos: list[bytes]):
    route = rng.choices([r for r, _ in MIX], [w for _, w in MIX])[0]
    request: dict[str, Any] = {}
    if route == "POST /classify":
        path = "/classify"
        request["files"] = {"image": ("q.jpg", rng.choice(photos), "image/jpeg")}
    elif route == "GET /products/{sku}":
        path = f"/products/{rng.choice(tally.seeded)}"
    elif route == "GET /products":
        path = f"/products?limit=20&offset={rng.randrange(0, 40)}"
    elif route == "POST /products":
        sku = f"load-{rng.getrandbits(48):012x}"
        path = "/products"
        request["data"] = {"sku": sku, "name": sku}
        request["files"] = [("images", ("a.jpg", noise_jpeg(rng, 64), "image/jpeg"))]
    elif route == "POST /products/{sku}/images" and tally.mine:
        path = f"/products/{rng.choice(tally.mine)}/images"
        request["files"] = [("images", ("b.jpg", noise_jpeg(rng, 64), "image/jpeg"))]
    elif route == "DELETE /products/{sku}" and tally.mine:
        path = f"/products/{tally.mine.pop(rng.randrange(len(tally.mine)))}"
    else:
        return
    begin = time.perf_counter()
    try:
        response: httpx.Response | httpx.HTTPError = await client.request(
            route.split()[0], path, **request
        )
    except httpx.HTTPError as exc:
        response = exc
    tally.latencies[route].append(time.perf_counter() - begin)
    tally.answers[route][_kind(response)] += 1
    if (
        route == "POST /products"
        and isinstance(response, httpx.Response)
        and response.status_code == 201
    ):
        tally.mine.append(request["data"]["sku"])


async def _drive(url: str, seconds: float, concurrency: int, tally: Tally, seed: int) -> int:
    photos = grocery_photos(limit=64)
    # Idle connections expire on the client before uvicorn's 5 s keep-alive closes them: a
    # request sent on a connection the server is closing at that moment gets no answer, and
    # that race is the client pool's, not the service's.
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0
    )
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def client_loop(k: int) -> None:
            rng = random.Random(seed * 1000 + k)
            while time.monotonic() < deadline:
                await _one(client, tally, rng, photos)

        await asyncio.gather(*(client_loop(k) for k in range(concurrency)))
    return sum(sum(c.values()) for c in tally.answers.values())


def _seed(url: str, tally: Tally, count: int = 20) -> None:
    iconic = sorted((GROCERY / "iconic-images-and-descriptions").rglob("*_Iconic.jpg"))[:count]
    with httpx.Client(base_url=url, timeout=120) as client:
        for i, path in enumerate(iconic):
            sku = f"seed-{i}"
            files = [("images", (path.name, path.read_bytes(), "image/jpeg"))]
            response = client.post("/products", data={"sku": sku, "name": path.stem}, files=files)
            response.raise_for_status()
            tally.seeded.append(sku)


def run(
    seconds: float = 180,
    concurrency: int = 64,
    model: str = "efficientnet-lite0",
    max_concurrency: int | None = None,
    seed: int = 0,
) -> LoadReport:
    root = Path(tempfile.mkdtemp(prefix="drill-load-"))
    db_url = create_database()
    settings: dict[str, object] = {
        "database_url": db_url,
        "data_dir": root / "data",
        "model": model,
        "device": "cpu",
    }
    if max_concurrency is not None:
        settings["max_concurrency"] = max_concurrency
    server = quiet_server(settings, root / "server.log")
    tally = Tally()
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            samples.append(server.rss_mb())

    try:
        server.start()
        _seed(server.url, tally)
        rss_start = server.rss_mb()
        sampler = threading.Thread(target=sample)
        sampler.start()
        begin = time.monotonic()
        try:
            requests = asyncio.run(_drive(server.url, seconds, concurrency, tally, seed))
        finally:
            done.set()
            sampler.join()
        wall = time.monotonic() - begin
        peak, rss_end = server.peak_rss_mb(), server.rss_mb()
        in_server = server_p99(httpx.get(f"{server.url}/metrics", timeout=60).text)
    finally:
        server.stop()
        drop_pg_database(db_url)
        shutil.rmtree(root, ignore_errors=True)
    rows = []
    for route, _ in MIX:
        answers, times = tally.answers[route], tally.latencies[route]
        rows.append(
            [
                route,
                sum(answers.values()),
                ", ".join(f"{kind}: {n}" for kind, n in sorted(answers.items())),
                f"{1000 * percentile(times, 0.50):.0f}",
                f"{1000 * percentile(times, 0.99):.0f}",
                in_server.get(route, "-"),
            ]
        )
    return LoadReport(rows, tally.answers, wall, requests, peak, rss_start, rss_end, samples)


def problems(report: LoadReport) -> list[str]:
    found = []
    for route, answers in report.answers.items():
        for kind, count in answers.items():
            if kind.startswith("no answer") or (
                kind.startswith("5") and not kind.startswith("503")
            ):
                found.append(f"{route}: {kind} x{count}")
            if kind.startswith("503") and kind not in OVERLOAD:
                found.append(f"{route}: {kind} x{count} (not the overload 503)")
    return found


def quarters(samples: list[float]) -> list[float]:
    """RSS at the end of each quarter of the run: flat means bounded."""
    if not samples:
        return []
    return [samples[max(0, round(q * len(samples)) - 1)] for q in (0.25, 0.5, 0.75, 1.0)]


def report(result: LoadReport, concurrency: int) -> str:
    """Per route: answers and latency; then requests, rate and the server's memory."""
    headers = ("route", "requests", "answers", "p50 ms", "p99 ms", "server-side p99")
    summary = {
        "clients": concurrency,
        "seconds": f"{result.seconds:.0f}",
        "requests": result.requests,
        "req/s": f"{result.requests / result.seconds:.1f}",
        "RSS start MB": f"{result.rss_start_mb:.0f}",
        "RSS by quarter MB": " / ".join(f"{q:.0f}" for q in quarters(result.rss_samples)),
        "peak RSS MB (VmHWM)": f"{result.peak_rss_mb:.0f}",
    }
    return f"{table(headers, result.rows)}\n\n{table(list(summary), [list(summary.values())])}"
