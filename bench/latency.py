"""/classify against the encoder alone and the framework floor, before and after, in one run.

    git worktree add /tmp/rk-before 31440e0       # the code before the restructuring
    nice -n 10 .venv/bin/python -m bench.latency --before /tmp/rk-before
        [--rounds 10] [--per-round 40] [--model M] [--runtime R] [--client lean|httpx]

Measured in interleaved rounds, so that this machine's drift falls on every side alike:
(a) the encoder alone, in this process (the service's own loader and settings): one forward
    pass of one preprocessed photo (batch 1, p50) and of 8 photos as one batch (photos/s);
    the photo's decode + preprocess is timed beside it (shown, not part of the ratios);
(b) the framework floor (bench/framework_floor.py): a bare FastAPI app under the uvicorn.run
    arguments of `retailklip serve`, one route that reads one multipart upload;
(c) POST /classify of this checkout (`--after PATH`: another one), `retailklip serve` with
    default settings but a fresh SQLite data dir, warning-level logs and a shared ONNX cache;
(d) with `--before PATH`: POST /classify of that checkout, same venv, its `app` first on the
    path (tests.support.servers.LiveServer `code`).
Both services get the 81 iconic Grocery Store catalogue images registered first (POST
/products); queries are Grocery Store test photos, the same ones for every side. Concurrency 1
alternates photo by photo over the sides (order rotated each round); concurrency 8 is 8 client
threads over a round's photos, against the encoder's batch-8 rate over the same photos.

Reported: p50 at concurrency 1 and requests/s at concurrency 8 per side; for each code base
/classify c=1 p50 / (encoder batch-1 p50 + floor p50) and /classify c=8 throughput / encoder
batch-8 rate, then the same two ratios with the photos' decode + preprocess added to the
encoder's side (what embedding a photo costs a caller in this process); and the server's own
stage timings over the concurrency-1 requests, read from /metrics (differences of histogram
sums and counts before and after each round: retailklip_stage_duration_seconds per stage,
retailklip_http_request_duration_seconds for the route), '-' where a code base does not export
them.

The client is a keep-alive `http.client` connection per thread with the multipart body built
before the clock starts (`--client httpx` measures through httpx instead, which spends about a
millisecond of this machine's CPU per request).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from tqdm import tqdm

from bench.framework_floor import serve_arguments
from bench.service_bench import DATA, classes, queries, register_catalogue
from tests.support.paths import REPO
from tests.support.reports import table
from tests.support.servers import LiveServer, quiet_server

KEEP_ALIVE_S = 2.0  # reuse a connection idle at most this long (uvicorn closes at 5 s)
FLOOR_COMMAND = ("-m", "bench.framework_floor", "--host", "127.0.0.1")
STAGES = ("decode", "forward", "search")
ROUTE_SECONDS = "retailklip_http_request_duration_seconds"
STAGE_SECONDS = "retailklip_stage_duration_seconds"


# ----------------------------------------------------------------------------- encoder alone


class EncoderAlone:
    """The service's encoder (its loader, its settings), in this process: no HTTP, no queue."""

    def __init__(self, settings: dict[str, object]) -> None:
        from app.encoder.decode import decode_photo
        from app.encoder.loading import load_service_encoder
        from app.encoder.preprocess import eval_pixels, whole_photo
        from app.settings import Settings

        config = Settings(**settings)  # type: ignore[arg-type]
        self.encoder = load_service_encoder(config.model_choice)
        self.max_pixels = config.max_image_pixels
        self._decode = decode_photo
        self._whole = whole_photo(self.encoder.preprocess)
        self._pixels = eval_pixels

    def pixels(self, data: bytes) -> np.ndarray:
        image = self._decode(data, self.max_pixels, self._whole).image
        return self._pixels(image, self.encoder.preprocess)

    def decode_seconds(self, data: bytes) -> float:
        begin = time.perf_counter()
        self.pixels(data)
        return time.perf_counter() - begin

    def forward_seconds(self, pixels: np.ndarray) -> float:
        """One forward pass of a (n, 3, size, size) batch."""
        begin = time.perf_counter()
        self.encoder.embed_pixels(pixels)
        return time.perf_counter() - begin


# ----------------------------------------------------------------------------- HTTP clients


class LeanClient:
    """POST /classify over one keep-alive `http.client` connection per thread, the multipart body
    built before the clock starts: what a client written for throughput does (the client shares
    the machine's cores with the servers)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()
        # Worker threads that live as long as the client, so each keeps its connection open.
        self.pools: dict[int, ThreadPoolExecutor] = {}

    def pool(self, concurrency: int) -> ThreadPoolExecutor:
        return self.pools.setdefault(concurrency, ThreadPoolExecutor(concurrency))

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=True)

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's connection, opened anew when it sat idle long enough for the server to
        close it, before any clock starts."""
        connection: http.client.HTTPConnection | None = getattr(self.local, "connection", None)
        idle = time.monotonic() - getattr(self.local, "used", 0.0)
        if connection is not None and idle > KEEP_ALIVE_S:
            connection.close()
            connection = None
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port)
            connection.connect()
            self.local.connection = connection
        return connection

    @staticmethod
    def body(data: bytes) -> tuple[bytes, str]:
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        )
        body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
        return body, f"multipart/form-data; boundary={boundary}"

    def classify(self, prepared: tuple[bytes, str]) -> float:
        return self.timed_classify(prepared)[0]

    def timed_classify(self, prepared: tuple[bytes, str]) -> tuple[float, bytes]:
        """Seconds from sending the request to the answer's last byte, and the answer."""
        body, content_type = prepared
        connection = self._connection()
        begin = time.perf_counter()
        connection.request("POST", "/classify", body, {"Content-Type": content_type})
        response = connection.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - begin
        self.local.used = time.monotonic()
        if response.status != 200:
            raise RuntimeError(f"/classify on port {self.port}: {response.status} {answer[:300]!r}")
        return elapsed, answer

    def run(self, blobs: list[bytes], concurrency: int) -> tuple[list[float], float]:
        """Per-request seconds and the wall time for all of `blobs` at `concurrency`."""
        prepared = [self.body(data) for data in blobs]
        begin = time.perf_counter()
        times = list(self.pool(concurrency).map(self.classify, prepared))
        return times, time.perf_counter() - begin


class HttpxClient:
    """The same requests through httpx (`--client httpx`)."""

    def __init__(self, port: int) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)

    def close(self) -> None:
        self.client.close()

    def run(self, blobs: list[bytes], concurrency: int) -> tuple[list[float], float]:
        def one(data: bytes) -> float:
            begin = time.perf_counter()
            self.client.post("/classify", files={"image": ("photo.jpg", data)}).raise_for_status()
            return time.perf_counter() - begin

        begin = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            times = list(pool.map(one, blobs))
        return times, time.perf_counter() - begin


Client = LeanClient | HttpxClient


# ----------------------------------------------------------------------------- /metrics


def scrape(url: str) -> dict[tuple[str, str], float]:
    """(series, 'sum'|'count') -> value: the stage histogram per stage, and POST /classify's
    request histogram as ('route', ...)."""
    found: dict[tuple[str, str], float] = {}
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        if family.name not in (STAGE_SECONDS, ROUTE_SECONDS):
            continue
        for sample in family.samples:
            part = sample.name.rsplit("_", 1)[-1]
            if part not in ("sum", "count"):
                continue
            if family.name == STAGE_SECONDS:
                found[(sample.labels["stage"], part)] = sample.value
            elif sample.labels.get("route") == "/classify" and sample.labels["method"] == "POST":
                found[("route", part)] = sample.value
    return found


@dataclass
class StageTotals:
    """Sums and counts of the server's histograms over the measured requests only."""

    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(
        self, before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]
    ) -> None:
        for (series, part), value in after.items():
            target = self.sums if part == "sum" else self.counts
            target[series] += value - before.get((series, part), 0.0)

    def mean_ms(self, series: str) -> str:
        count = self.counts.get(series, 0.0)
        return f"{1000 * self.sums[series] / count:.2f}" if count else "-"


# ----------------------------------------------------------------------------- sides


@dataclass
class Side:
    """One thing measured over HTTP: the floor, or /classify of one code base."""

    name: str
    server: LiveServer
    client: Client | None = None
    c1: list[float] = field(default_factory=list)
    c8_wall: float = 0.0
    c8_count: int = 0
    stages: StageTotals = field(default_factory=StageTotals)
    ready: dict[str, Any] = field(default_factory=dict)

    def run(self, blobs: list[bytes], concurrency: int) -> tuple[list[float], float]:
        """`blobs` at `concurrency` through this side's client; a failed request raises with
        the side's name and its server's log tail."""
        assert self.client is not None
        try:
            return self.client.run(blobs, concurrency)
        except (RuntimeError, OSError, httpx.HTTPError) as exc:
            raise RuntimeError(
                f"{self.name} ({self.server.describe()}): {exc}\n"
                f"--- last lines of {self.server.log_path} ---\n{self.server.log_tail()}"
            ) from exc


def describe(code: Path) -> str:
    """`PATH @ commit`, with a note when its app/ has uncommitted changes."""
    head = subprocess.run(
        ["git", "-C", str(code), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(code), "status", "--porcelain", "--", "app"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    note = f" + {len(dirty)} uncommitted files in app/" if dirty else ""
    return f"{code} @ {head or '?'}{note}"


def p50_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--before", type=Path, help="checkout of the code before (a worktree)")
    parser.add_argument("--after", type=Path, default=REPO, help="checkout measured as after")
    parser.add_argument("--model", help="RETAILKLIP_MODEL (default: the service's default)")
    parser.add_argument("--runtime", choices=("auto", "torch", "onnx", "onnx-int8"))
    parser.add_argument("--data", type=Path, default=DATA, help="the Grocery Store data set")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=40, help="photos per round (x8)")
    parser.add_argument("--client", default="lean", choices=("lean", "httpx"))
    args = parser.parse_args(argv)
    per_round = max(8, args.per_round // 8 * 8)

    catalogue = classes(args.data)
    photos = [p for p, _ in queries(args.data, "test")]
    total = args.rounds * per_round
    step = max(1, len(photos) // total)
    blobs = [p.read_bytes() for p in photos[::step][:total]]
    if len(blobs) < total:
        raise SystemExit(f"only {len(blobs)} test photos under {args.data}, {total} asked for")
    overrides = {k: v for k, v in (("model", args.model), ("runtime", args.runtime)) if v}

    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        work = Path(tmp)
        onnx_dir = work / "onnx"  # one export (made by the encoder alone), every side reads it
        encoder_settings = {"data_dir": work / "alone", "onnx_dir": onnx_dir, **overrides}
        # The first load exports the ONNX graph (and answers with the exporting runtime); the
        # one measured loads it from the cache, as every server below does.
        EncoderAlone(encoder_settings)
        alone = EncoderAlone(encoder_settings)
        settings = {"onnx_dir": onnx_dir, **overrides}
        codes = [("after", args.after)] + ([("before", args.before)] if args.before else [])
        sides = [
            Side(
                "framework floor",
                quiet_server(
                    {"data_dir": work / "floor"}, work / "floor.log", command=FLOOR_COMMAND
                ),
            )
        ]
        sides += [
            Side(
                f"/classify {label}",
                quiet_server(
                    {"data_dir": work / label, **settings}, work / f"{label}.log", code=code
                ),
            )
            for label, code in codes
        ]
        try:
            for side in sides:
                side.server.start()
                side.ready = httpx.get(f"{side.server.url}/readyz", timeout=30).json()
                if side.name != "framework floor":
                    with httpx.Client(base_url=side.server.url, timeout=120) as client:
                        register_catalogue(client, catalogue)
                side.client = (
                    LeanClient(side.server.port)
                    if args.client == "lean"
                    else HttpxClient(side.server.port)
                )
            encoder = measure(alone, sides, blobs, args.rounds, per_round)
        finally:
            for side in sides:
                if side.client is not None:
                    side.client.close()
                side.server.stop()

    report(args, alone, encoder, sides, codes, catalogue, per_round)
    return 0


# The encoder alone: "b1" and "decode" seconds per photo, "b8_wall" seconds for "b8_count".
EncoderResults = dict[str, Any]


def measure(
    alone: EncoderAlone, sides: list[Side], blobs: list[bytes], rounds: int, per_round: int
) -> EncoderResults:
    """Fills each side's figures; returns the encoder's."""
    results: EncoderResults = {"b1": [], "decode": [], "b8_wall": 0.0, "b8_count": 0}
    pixels = [alone.pixels(data) for data in tqdm(blobs, desc="preprocess", leave=False)]
    # Warm-up, every side: connections, caches, the first batch shapes.
    for i in range(8):
        alone.forward_seconds(pixels[i][None])
    alone.forward_seconds(np.stack(pixels[:8]))
    for side in sides:
        side.run(blobs[:16], 1)
        side.run(blobs[:16], 8)
    services = [side for side in sides if side.name != "framework floor"]
    for r in tqdm(range(rounds), desc="rounds"):
        chunk = range(r * per_round, (r + 1) * per_round)
        # Each round another side goes first (the encoder alone is one of them).
        order: list[Side | None] = [None, *sides]
        order = order[r % len(order) :] + order[: r % len(order)]
        # Concurrency 1, photo by photo over every side; the servers' own histograms around it.
        scraped = {side.name: scrape(side.server.url) for side in services}
        for i in chunk:
            for side in order:
                if side is None:
                    results["decode"].append(alone.decode_seconds(blobs[i]))
                    results["b1"].append(alone.forward_seconds(pixels[i][None]))
                else:
                    side.c1 += side.run([blobs[i]], 1)[0]
        for side in services:
            side.stages.add(scraped[side.name], scrape(side.server.url))
        # Concurrency 8 (the encoder: batches of 8) over the same photos.
        for side in order:
            if side is None:
                for i in range(chunk.start, chunk.stop, 8):
                    results["b8_wall"] += alone.forward_seconds(np.stack(pixels[i : i + 8]))
                    results["b8_count"] += 8
            else:
                _, wall = side.run([blobs[i] for i in chunk], 8)
                side.c8_wall += wall
                side.c8_count += len(chunk)
    return results


def report(
    args: argparse.Namespace,
    alone: EncoderAlone,
    encoder: EncoderResults,
    sides: list[Side],
    codes: list[tuple[str, Path]],
    catalogue: dict[int, tuple[str, Path]],
    per_round: int,
) -> None:
    b1 = p50_ms(encoder["b1"])
    b8_rate = encoder["b8_count"] / encoder["b8_wall"]
    floor = next(side for side in sides if side.name == "framework floor")
    floor_p50 = p50_ms(floor.c1)
    # As the servers read them (RETAILKLIP_LOG_LEVEL=warning for all three).
    exclude = ("host", "port", "log_level")
    uvicorn_args = {k: v for k, v in serve_arguments([]).items() if k not in exclude}
    service = next(side for side in sides if side.name == "/classify after")
    print(
        f"\nmodel {service.ready.get('model')} runtime {service.ready.get('runtime', '?')}, "
        f"encoder alone: {type(alone.encoder).__name__}; {len(catalogue)} products registered "
        f"per service; {args.rounds} interleaved rounds of {per_round} Grocery Store test "
        f"photos; client {args.client}; uvicorn.run arguments (services and floor): "
        f"{uvicorn_args}, log level warning"
    )
    for label, code in codes:
        print(f"{label}: {describe(code)}")
    rows: list[list[object]] = [
        ["(a) encoder alone, forward pass, batch 1", f"{b1:.2f}", ""],
        ["(a) encoder alone, forward pass, batch of 8", "", f"{b8_rate:.1f}"],
        [
            "    decode + preprocess alone (not in the ratios)",
            f"{p50_ms(encoder['decode']):.2f}",
            "",
        ],
    ]
    for side in sides:
        letter = {"framework floor": "(b)", "/classify after": "(c)"}.get(side.name, "(d)")
        rows.append(
            [
                f"{letter} {side.name}",
                f"{p50_ms(side.c1):.2f}",
                f"{side.c8_count / side.c8_wall:.1f}",
            ]
        )
    print()
    print(table(("measurement", "c=1 p50 ms", "c=8 /s (encoder: photos/s)"), rows))
    ratio_rows: list[list[object]] = []
    for label, _ in reversed(codes):  # before first
        side = next(s for s in sides if s.name == f"/classify {label}")
        ratio_rows.append(
            [
                label,
                f"{p50_ms(side.c1):.2f} / ({b1:.2f} + {floor_p50:.2f}) = "
                f"{p50_ms(side.c1) / (b1 + floor_p50):.2f}x",
                f"{side.c8_count / side.c8_wall:.1f} / {b8_rate:.1f} = "
                f"{side.c8_count / side.c8_wall / b8_rate:.2f}x",
            ]
        )
    print()
    print(
        table(
            (
                "code",
                "c=1: /classify p50 / (encoder b1 p50 + floor p50)",
                "c=8: /classify req/s / encoder batch-8 photos/s",
            ),
            ratio_rows,
        )
    )
    # The same ratios against the encoder as a caller in this process uses it: each photo is
    # decoded and preprocessed (one thread), then forwarded (a /classify request does both).
    decode = p50_ms(encoder["decode"])
    b8_with_decode = encoder["b8_count"] / (encoder["b8_wall"] + sum(encoder["decode"]))
    with_decode: list[list[object]] = []
    for label, _ in reversed(codes):
        side = next(s for s in sides if s.name == f"/classify {label}")
        c1, c8 = p50_ms(side.c1), side.c8_count / side.c8_wall
        with_decode.append(
            [
                label,
                f"{c1:.2f} / ({decode:.2f} + {b1:.2f} + {floor_p50:.2f}) = "
                f"{c1 / (decode + b1 + floor_p50):.2f}x",
                f"{c8:.1f} / {b8_with_decode:.1f} = {c8 / b8_with_decode:.2f}x",
            ]
        )
    print()
    print(
        table(
            (
                "code",
                "c=1: /classify p50 / (decode p50 + encoder b1 p50 + floor p50)",
                "c=8: /classify req/s / encoder batch-8 photos/s, decode included",
            ),
            with_decode,
        )
    )
    services = [s for s in sides if s.name != "framework floor"]
    stage_rows: list[list[object]] = [
        ["requests timed (c=1)", *(f"{len(s.c1)}" for s in services)],
        ["client round trip, p50", *(f"{p50_ms(s.c1):.2f}" for s in services)],
        ["client round trip, mean", *(f"{1000 * statistics.mean(s.c1):.2f}" for s in services)],
        [
            "in the app until it returns (request histogram)",
            *(s.stages.mean_ms("route") for s in services),
        ],
    ]
    stage_rows += [
        [f"stage: {stage}", *(s.stages.mean_ms(stage) for s in services)] for stage in STAGES
    ]
    print(
        "\nthe servers' own timings at c=1, mean ms per request (from /metrics; the app's time "
        "runs until its ASGI call returns, so work after the response is sent counts there, "
        "not in the round trip)"
    )
    print(table(("series", *(s.name for s in services)), stage_rows))


if __name__ == "__main__":
    raise SystemExit(main())
