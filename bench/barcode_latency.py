"""What reading barcodes costs POST /classify: the same requests with reading on and off, one run.

    nice -n 10 .venv/bin/python -m bench.barcode_latency [--rounds 5] [--per-round 20]
        [--sizes asis,1mp,12mp] [--model M] [--baseline REV]

Two `retailklip serve` processes of this checkout, the service's default model and settings
(its default runtime, graphs from a fresh ONNX dir or the ones shipped in app/models/), each on
a fresh SQLite data dir with the 81 iconic Grocery Store catalogue images registered (POST
/products), warning-level logs; one with RETAILKLIP_BARCODES=false (*off*), one with the
default RETAILKLIP_BARCODES=true (*on*: BARCODE_BUDGET_MS 100, BARCODE_READ_SIDE 2000,
BARCODE_THREADS 2, reading on its own pool beside the classification). `--baseline REV` adds a
third server, reading on, served from a `git worktree` of an older commit (same venv): the
code before a change, measured in the same run (*on@REV*), every ratio beside this checkout's.

Queries: Grocery Store test photos (a new set of `--per-round` photos each round), each in up to
three sizes (`--sizes`), each without a code and with one (tests/support/barcode_photos.py: a
real EAN-13 drawn by zxing-cpp on a white label pasted in the lower right corner, random digits
with a valid check digit, held by no product):
- `asis`: the stored JPEGs (348x348 or 348x464, 0.12-0.16 MP); with a code: 2 px per module,
  the photo re-encoded at JPEG 90 (a 3 px code does not fit a 348 px photo);
- `1mp`: cropped to 4:3 (or 3:4) and upscaled to 1155x866, JPEG 90; code at 3 px per module;
- `12mp`: the same at 4000x3000, JPEG 90 (the server reads it decoded at 1/2, 2000 px); code at
  7 px per module (3.5 in what the reader sees). An upscaled photo is smoother than a camera's
  and its JPEG smaller (~0.8 MB against a phone's 3-5 MB): its decode costs somewhat less.

Concurrency 1, interleaved: each round goes photo by photo, and for each photo through every
size and code/no-code variant, sending that request to every server one after the other (which
server goes first rotates by round), so the machine's drift falls on all alike. Then
concurrency 4: the round's 1 MP photos without a code (repeated up to 40 requests), 4 client
threads, once per server (same order). The client is a keep-alive `http.client` connection per
thread, the multipart body built before the clock starts (bench/latency.py's LeanClient), in
this process.

Reported per size and code/no-code: p50 and p90 ms off and on; on/off of the p50 over all
rounds and the min-max of the per-round on/off p50 ratios (how far the machine's noise moves
it); the fraction of `on` answers whose `barcodes` is not empty, and any code read that is not
the pasted one (must be 0; `off` must read nothing). Then concurrency 4 requests/s off and on
and their ratio (all rounds, and per-round min-max). Beside each: the server process's CPU time
per request (user + system, all threads, from /proc/PID/stat around each request at
concurrency 1 and around each burst at concurrency 4; 10 ms ticks, so a mean over many
requests): what the work costs whatever else the machine runs. Prints tables; writes nothing
into the repository.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from tqdm import tqdm

from app.barcodes.gtin import check_digit
from bench.latency import LeanClient, describe
from bench.service_bench import DATA, classes, queries, register_catalogue
from tests.support.barcode_photos import photo_with_code
from tests.support.paths import REPO
from tests.support.reports import percentile, table
from tests.support.servers import LiveServer, quiet_server

QUALITY = 90  # JPEG quality of every re-encoded photo
# size name -> (long side of the 4:3 photo, px per module of the pasted code); None: as stored.
SIZES: dict[str, tuple[int | None, int]] = {
    "asis": (None, 2),
    "1mp": (1155, 3),
    "12mp": (4000, 7),
}
THROUGHPUT_SIZE = "1mp"  # the set measured at concurrency 4 (without a code)
CONCURRENCY = 4
C4_REQUESTS = 40  # per server and round at concurrency 4, at least
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
SIDES = ("off", "on")


# ----------------------------------------------------------------------------- photos


def ean13(rng: random.Random) -> str:
    """A random EAN-13 with a valid check digit (prefix 40-49: no restricted-circulation one)."""
    body = f"4{rng.randrange(10)}" + "".join(str(rng.randrange(10)) for _ in range(10))
    return body + check_digit(body)


def cropped_4_3(path: Path) -> bytes:
    """The photo centre-cropped to 4:3 (3:4 when it is taller than wide), as PNG bytes."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    w, h = image.size
    long, short = max(w, h), min(w, h)
    if long * 3 > short * 4:  # too long: crop the long side
        long = short * 4 // 3
    else:  # too square: crop the short side
        short = long * 3 // 4
    cw, ch = (long, short) if w >= h else (short, long)
    left, top = (w - cw) // 2, (h - ch) // 2
    buffer = io.BytesIO()
    image.crop((left, top, left + cw, top + ch)).save(buffer, format="PNG")
    return buffer.getvalue()


def scaled(source: bytes, long_side: int) -> bytes:
    """`source` resized to `long_side` as photo_with_code resizes, JPEG at QUALITY."""
    with Image.open(io.BytesIO(source)) as opened:
        image = opened.convert("RGB")
    scale = long_side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


@dataclass
class PhotoSet:
    """One size, with or without a code: a JPEG per query photo (and the digits pasted)."""

    size: str
    coded: bool
    blobs: list[bytes] = field(default_factory=list)
    digits: list[str | None] = field(default_factory=list)
    shapes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.size}/{'code' if self.coded else 'none'}"

    def describe(self) -> str:
        """The commonest shape (its share), the megapixels' range, the mean JPEG size."""
        (w, h), count = Counter(self.shapes).most_common(1)[0]
        mp = sorted(a * b / 1e6 for a, b in self.shapes)
        kb = statistics.mean(len(b) for b in self.blobs) / 1024
        share = f" ({count / len(self.shapes):.0%})" if count < len(self.shapes) else ""
        megapixels = f"{mp[0]:.2f}" + (f"-{mp[-1]:.2f}" if mp[-1] - mp[0] >= 0.005 else "")
        return f"{w}x{h}{share}, {megapixels} MP, {kb:.0f} KB"


def build_sets(photos: list[Path], sizes: list[str], seed: int) -> list[PhotoSet]:
    rng = random.Random(seed)
    codes = [ean13(rng) for _ in photos]
    sets = [PhotoSet(size, coded) for size in sizes for coded in (False, True)]
    for path, digits in zip(tqdm(photos, desc="photos"), codes, strict=True):
        crop: bytes | None = None
        for photo_set in sets:
            long_side, module = SIZES[photo_set.size]
            if long_side is None:
                with Image.open(path) as opened:
                    long_side = max(opened.size)
                source: Path | bytes = path
            else:
                crop = crop or cropped_4_3(path)
                source = crop
            if photo_set.coded:
                data, _ = photo_with_code(
                    source, digits, long_side=long_side, module=module, quality=QUALITY
                )
            elif isinstance(source, Path):
                data = source.read_bytes()  # as stored
            else:
                data = scaled(source, long_side)
            with Image.open(io.BytesIO(data)) as opened:
                photo_set.shapes.append(opened.size)
            photo_set.blobs.append(data)
            photo_set.digits.append(digits if photo_set.coded else None)
    return sets


# ----------------------------------------------------------------------------- client, sides


class AnsweringClient(LeanClient):
    """bench/latency.py's keep-alive client, keeping the answer (the codes read) too."""

    def post(self, prepared: tuple[bytes, str]) -> tuple[float, dict[str, Any]]:
        elapsed, answer = self.timed_classify(prepared)
        return elapsed, json.loads(answer)

    def wall(self, prepared: list[tuple[bytes, str]], concurrency: int) -> float:
        begin = time.perf_counter()
        list(self.pool(concurrency).map(self.post, prepared))
        return time.perf_counter() - begin


@dataclass
class Reads:
    answers: int = 0
    read: int = 0  # answers with a non-empty `barcodes`
    other: int = 0  # codes read that are not the pasted one


@dataclass
class Side:
    name: str
    server: LiveServer
    client: AnsweringClient | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    # set key -> one list of seconds per round
    times: dict[str, list[list[float]]] = field(default_factory=dict)
    reads: dict[str, Reads] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # set key -> server CPU seconds
    c4: list[tuple[int, float]] = field(default_factory=list)  # per round: requests, wall s
    c4_cpu: float = 0.0

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far, all its threads (user + system)."""
        stat = Path(f"/proc/{self.server.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # from field 3 (state) on
        return (int(fields[11]) + int(fields[12])) * TICK_S

    def classify(self, prepared: tuple[bytes, str]) -> tuple[float, dict[str, Any]]:
        assert self.client is not None
        try:
            return self.client.post(prepared)
        except (RuntimeError, OSError) as exc:
            raise RuntimeError(
                f"{self.name} ({self.server.describe()}): {exc}\n"
                f"--- last lines of {self.server.log_path} ---\n{self.server.log_tail()}"
            ) from exc

    def record(
        self, photo_set: PhotoSet, i: int, seconds: float, cpu: float, answer: dict[str, Any]
    ) -> None:
        self.times[photo_set.key][-1].append(seconds)
        self.cpu[photo_set.key] = self.cpu.get(photo_set.key, 0.0) + cpu
        reads = self.reads.setdefault(photo_set.key, Reads())
        codes = answer["barcodes"]
        reads.answers += 1
        reads.read += bool(codes)
        reads.other += sum(code["text"] != photo_set.digits[i] for code in codes)


# ----------------------------------------------------------------------------- run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20, help="query photos per round")
    parser.add_argument(
        "--sizes", default=",".join(SIZES), help=f"comma-separated, of {', '.join(SIZES)}"
    )
    parser.add_argument("--model", help="RETAILKLIP_MODEL (default: the service's default)")
    parser.add_argument("--data", type=Path, default=DATA, help="the Grocery Store data set")
    parser.add_argument("--seed", type=int, default=0, help="the pasted codes' digits")
    parser.add_argument(
        "--baseline", help="an older commit served beside, reading on (a git worktree of it)"
    )
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if unknown := [s for s in sizes if s not in SIZES]:
        parser.error(f"unknown sizes {unknown}: choose from {', '.join(SIZES)}")
    per_round = max(CONCURRENCY, args.per_round)

    catalogue = classes(args.data)
    test_photos = [p for p, _ in queries(args.data, "test")]
    total = args.rounds * per_round
    if len(test_photos) < total:
        raise SystemExit(f"only {len(test_photos)} test photos under {args.data}, {total} asked")
    step = len(test_photos) // total
    sets = build_sets(test_photos[::step][:total], sizes, args.seed)
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="bench-barcode-latency-") as tmp:
        work = Path(tmp)
        common = {"onnx_dir": work / "onnx", **({"model": args.model} if args.model else {})}
        codes: dict[str, Path] = {name: REPO for name in SIDES}
        if args.baseline:
            tree = work / "baseline"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(tree), args.baseline],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            codes[f"on@{args.baseline}"] = tree
        sides = [
            Side(
                name,
                quiet_server(
                    {"data_dir": work / f"data-{i}", "barcodes": name != "off", **common},
                    work / f"{i}.log",
                    code=code,
                ),
            )
            for i, (name, code) in enumerate(codes.items())
        ]
        try:
            for side in sides:  # one after the other: the first may export the ONNX graph
                side.server.start()
                side.ready = httpx.get(f"{side.server.url}/readyz", timeout=30).json()
                with httpx.Client(base_url=side.server.url, timeout=120) as client:
                    register_catalogue(client, catalogue)
                side.client = AnsweringClient(side.server.port)
                side.times = {s.key: [] for s in sets}
            began = time.monotonic()
            measure(sides, sets, args.rounds, per_round)
            measured_s = time.monotonic() - began
        finally:
            for side in sides:
                if side.client is not None:
                    side.client.close()
                side.server.stop()
            if args.baseline:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(work / "baseline")],
                    cwd=REPO,
                    check=False,
                )

    report(args, sides, sets, per_round, load_before, measured_s)
    return 0


def measure(sides: list[Side], sets: list[PhotoSet], rounds: int, per_round: int) -> None:
    throughput = next((s for s in sets if s.size == THROUGHPUT_SIZE and not s.coded), None)
    # Warm-up, untimed: connections, caches, the reading pool, each size once or twice.
    for side in sides:
        for photo_set in sets:
            for data in photo_set.blobs[:2]:
                side.classify(LeanClient.body(data))
        if throughput is not None and side.client is not None:
            side.client.wall([LeanClient.body(d) for d in throughput.blobs[:8]], CONCURRENCY)
    for r in tqdm(range(rounds), desc="rounds"):
        chunk = range(r * per_round, (r + 1) * per_round)
        order = sides[r % len(sides) :] + sides[: r % len(sides)]
        prepared = {s.key: {i: LeanClient.body(s.blobs[i]) for i in chunk} for s in sets}
        for side in sides:
            for photo_set in sets:
                side.times[photo_set.key].append([])
        for i in chunk:
            for photo_set in sets:
                for side in order:
                    cpu = side.cpu_seconds()
                    seconds, answer = side.classify(prepared[photo_set.key][i])
                    cpu = side.cpu_seconds() - cpu
                    side.record(photo_set, i, seconds, cpu, answer)
        if throughput is None:
            continue
        # At least C4_REQUESTS per server (the round's photos, over again as needed), so that
        # the last, partly filled wave weighs little.
        count = max(C4_REQUESTS, len(chunk))
        burst = [prepared[throughput.key][chunk[n % len(chunk)]] for n in range(count)]
        for side in order:
            assert side.client is not None
            cpu = side.cpu_seconds()
            wall = side.client.wall(burst, CONCURRENCY)
            side.c4_cpu += side.cpu_seconds() - cpu
            side.c4.append((len(burst), wall))


# ----------------------------------------------------------------------------- report


def ms(values: list[float], q: float) -> float:
    return 1000 * percentile(values, q)


def spread(ratios: list[float]) -> str:
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def report(
    args: argparse.Namespace,
    sides: list[Side],
    sets: list[PhotoSet],
    per_round: int,
    load_before: tuple[float, float, float],
    measured_s: float,
) -> None:
    off, ons = sides[0], sides[1:]
    load_after = os.getloadavg()
    baseline = f", on@{args.baseline}: the same from that commit" if args.baseline else ""
    print(
        f"\nmodel {ons[0].ready.get('model')} runtime {ons[0].ready.get('runtime', '?')}; "
        f"{describe(REPO)}; {args.rounds} interleaved rounds of {per_round} Grocery Store test "
        f"photos per size and variant, {len(sides)} servers (off: RETAILKLIP_BARCODES=false, "
        f"on: the defaults{baseline}); {os.cpu_count()} CPUs, load average (1 min) "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; measured in {measured_s:.0f} s"
    )
    rows: list[list[object]] = []
    for photo_set in sets:
        times_off = off.times[photo_set.key]
        all_off = [t for chunk in times_off for t in chunk]
        reads_off = off.reads[photo_set.key]
        for on in ons:
            times_on = on.times[photo_set.key]
            all_on = [t for chunk in times_on for t in chunk]
            per_round_ratio = [
                statistics.median(b) / statistics.median(a)
                for a, b in zip(times_off, times_on, strict=True)
                if a and b
            ]
            reads_on = on.reads[photo_set.key]
            rows.append(
                [
                    photo_set.size,
                    "EAN-13" if photo_set.coded else "none",
                    photo_set.describe(),
                    on.name,
                    len(all_on),
                    f"{ms(all_off, 0.5):.1f}",
                    f"{ms(all_off, 0.9):.1f}",
                    f"{ms(all_on, 0.5):.1f}",
                    f"{ms(all_on, 0.9):.1f}",
                    f"{statistics.median(all_on) / statistics.median(all_off):.2f}",
                    spread(per_round_ratio),
                    f"{1000 * off.cpu[photo_set.key] / len(all_off):.0f} / "
                    f"{1000 * on.cpu[photo_set.key] / len(all_on):.0f}",
                    f"{reads_on.read / reads_on.answers:.0%}",
                    f"{reads_on.other} / {reads_off.read}",
                ]
            )
    print()
    print(
        table(
            (
                "size",
                "code",
                "photos: commonest shape, MP, mean JPEG",
                "reading on",
                "requests per side",
                "off p50 ms",
                "off p90 ms",
                "on p50 ms",
                "on p90 ms",
                "on/off p50",
                "per round",
                "server CPU ms off / on",
                "read (on)",
                "other codes (on) / reads (off)",
            ),
            rows,
        )
    )
    if not off.c4:
        print(f"\n(no concurrency-{CONCURRENCY} run: {THROUGHPUT_SIZE} not among --sizes)")
        return
    rate_off = sum(n for n, _ in off.c4) / sum(w for _, w in off.c4)
    c4_rows: list[list[object]] = []
    for on in ons:
        rate_on = sum(n for n, _ in on.c4) / sum(w for _, w in on.c4)
        per_round_rates = [
            (n_on / w_on) / (n_off / w_off)
            for (n_off, w_off), (n_on, w_on) in zip(off.c4, on.c4, strict=True)
        ]
        c4_rows.append(
            [
                f"{THROUGHPUT_SIZE}, no code",
                on.name,
                sum(n for n, _ in on.c4),
                f"{rate_off:.1f}",
                f"{rate_on:.1f}",
                f"{rate_on / rate_off:.2f}",
                spread(per_round_rates),
                f"{1000 * off.c4_cpu / sum(n for n, _ in off.c4):.0f} / "
                f"{1000 * on.c4_cpu / sum(n for n, _ in on.c4):.0f}",
            ]
        )
    print()
    print(
        table(
            (
                f"concurrency {CONCURRENCY}",
                "reading on",
                "requests per side",
                "off req/s",
                "on req/s",
                "on/off",
                "per round",
                "server CPU ms off / on",
            ),
            c4_rows,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
