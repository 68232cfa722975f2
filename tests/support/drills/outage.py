"""Database outage drill: stop PostgreSQL under load, start it again, and watch the service.

Writers and readers keep calling a `retailklip serve` on PostgreSQL (register, delete, get, list,
classify) while a monitor polls /readyz and /healthz. PostgreSQL is stopped for `--outage`
seconds (`pg_ctlcluster ... stop`, always started again, even on errors), then started. The drill
reports, per phase (before, outage, recovery until /readyz is 200 again, after), what every route
answered, and afterwards checks SQL against what the clients were told. Expected: /readyz 503
`database unavailable` during the outage, every call that needs SQL 503 with that detail (never
500), /healthz 200 throughout, recovery without a restart, nothing acknowledged lost.

This stops the machine's PostgreSQL: other users of it see the outage too. Keep it short.
"""

from __future__ import annotations

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

from tests.support.databases import drop_pg_database, pg_cluster
from tests.support.drills import create_database, interrupt_on_signals, sql_state
from tests.support.photos import grocery_photos, noise_jpeg
from tests.support.reports import table
from tests.support.servers import quiet_server

# stopping: `pg_ctlcluster stop` running (it waits for sessions and a checkpoint); down: stopped;
# starting: `pg_ctlcluster start` running; recovery: PostgreSQL up, /readyz not yet 200.
PHASES = ("before", "stopping", "down", "starting", "recovery", "after")
DB_DOWN = "database unavailable"
PROBES = ("GET /readyz", "GET /healthz")


@dataclass
class Record:
    route: str
    status: int  # 0: no HTTP answer
    detail: str
    ended: float


@dataclass
class Timeline:
    stop_at: float = float("inf")  # stop issued
    down_at: float = float("inf")  # stop done: PostgreSQL is down
    start_at: float = float("inf")  # start issued
    up_at: float = float("inf")  # start done: PostgreSQL accepts connections again
    ready_at: float = float("inf")  # the service's /readyz is 200 again

    def phase(self, moment: float) -> str:
        marks = (self.stop_at, self.down_at, self.start_at, self.up_at, self.ready_at)
        return PHASES[sum(moment >= mark for mark in marks)]


@dataclass
class Shared:
    records: list[Record] = field(default_factory=list)
    expected: dict[str, str] = field(default_factory=dict)  # sku -> present/absent/either
    live: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, route: str, response: httpx.Response | None) -> None:
        status, detail = 0, "no answer"
        if response is not None:
            status = response.status_code
            body = response.json() if "json" in response.headers.get("content-type", "") else {}
            detail = body.get("detail", "") if isinstance(body, dict) else ""
        with self.lock:
            self.records.append(Record(route, status, detail, time.monotonic()))


def _call(
    shared: Shared, client: httpx.Client, route: str, path: str, **request: Any
) -> httpx.Response | None:
    """One request of `route` (METHOD /template) to `path`, recorded with its answer."""
    try:
        response = client.request(route.split()[0], path, **request)
    except httpx.HTTPError:
        response = None
    shared.note(route, response)
    return response


def _worker(
    url: str, shared: Shared, stop: threading.Event, seed: int, photos: list[bytes]
) -> None:
    rng = random.Random(seed)
    n = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            roll = rng.random()
            with shared.lock:
                some = rng.choice(shared.live) if shared.live else None
            if roll < 0.3 or some is None:
                n += 1
                sku = f"outage-{seed}-{n}"
                answer = _call(
                    shared,
                    client,
                    "POST /products",
                    "/products",
                    data={"sku": sku, "name": sku},
                    files=[("images", ("a.jpg", noise_jpeg(rng), "image/jpeg"))],
                )
                with shared.lock:
                    if answer is not None and answer.status_code == 201:
                        shared.expected[sku] = "present"
                        shared.live.append(sku)
                    else:
                        shared.expected[sku] = "either" if answer is None else "refused"
            elif roll < 0.4:
                with shared.lock:
                    if some not in shared.live:
                        continue
                    shared.live.remove(some)
                answer = _call(shared, client, "DELETE /products/{sku}", f"/products/{some}")
                with shared.lock:
                    if answer is not None and answer.status_code == 204:
                        shared.expected[some] = "absent"
                    elif answer is None:
                        shared.expected[some] = "either"
                    else:
                        shared.live.append(some)
            elif roll < 0.6:
                _call(shared, client, "GET /products/{sku}", f"/products/{some}")
            elif roll < 0.7:
                _call(shared, client, "GET /products", "/products")
            else:
                photo = ("q.jpg", rng.choice(photos), "image/jpeg")
                _call(shared, client, "POST /classify", "/classify", files={"image": photo})


def _monitor(url: str, shared: Shared, stop: threading.Event, timeline: Timeline) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            ready = _call(shared, client, "GET /readyz", "/readyz")
            _call(shared, client, "GET /healthz", "/healthz")
            if ready is not None and ready.status_code == 200 and time.monotonic() > timeline.up_at:
                timeline.ready_at = min(timeline.ready_at, time.monotonic())
            time.sleep(0.25)


@dataclass
class OutageReport:
    rows: list[list[object]]  # phase, route, requests, answers by "status detail"
    by_phase: dict[str, Counter[tuple[str, int, str]]]
    recovery_s: float  # PostgreSQL up -> /readyz 200
    first_write_s: float  # PostgreSQL up -> first 201 of POST /products
    outage_s: float  # PostgreSQL down (stop done -> start issued)
    lost: int  # answered 201, not in SQL
    undeleted: int  # answered 204 to its delete, still in SQL
    phantom: int  # its create was refused (4xx/5xx), yet it is in SQL
    partial: int
    same_process: bool


def run(
    outage: float = 10.0,
    before: float = 5.0,
    after: float = 10.0,
    workers: int = 4,
    model: str = "efficientnet-lite0",
    seed: int = 0,
) -> OutageReport:
    root = Path(tempfile.mkdtemp(prefix="drill-outage-"))
    db_url = create_database()
    settings = {"database_url": db_url, "data_dir": root / "data", "model": model, "device": "cpu"}
    server = quiet_server(settings, root / "server.log")
    shared, timeline, stop = Shared(), Timeline(), threading.Event()
    photos = grocery_photos(limit=16)
    threads: list[threading.Thread] = []
    finished = False
    try:
        server.start()
        pid = server.pid
        threads = [
            threading.Thread(target=_worker, args=(server.url, shared, stop, seed + w, photos))
            for w in range(workers)
        ]
        threads.append(threading.Thread(target=_monitor, args=(server.url, shared, stop, timeline)))
        for thread in threads:
            thread.start()
        time.sleep(before)
        timeline.stop_at = time.monotonic()
        # PostgreSQL is shared: always started again, even when a signal stops the drill.
        with interrupt_on_signals():
            try:
                pg_cluster("stop")
                timeline.down_at = time.monotonic()
                time.sleep(outage)
            finally:
                timeline.start_at = time.monotonic()
                pg_cluster("start")
                timeline.up_at = time.monotonic()
        deadline = timeline.up_at + 120
        while timeline.ready_at == float("inf") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(after)
        finished = True
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        same_process = server.process is not None and server.process.poll() is None
        try:
            if finished:  # else the error that stopped the drill is the one to report
                model_id = httpx.get(f"{server.url}/readyz", timeout=30).json()["model"]
                state = sql_state(db_url, model_id)
        finally:
            server.stop()
            drop_pg_database(db_url)
            shutil.rmtree(root, ignore_errors=True)
    present = state.products
    by_phase: dict[str, Counter[tuple[str, int, str]]] = defaultdict(Counter)
    for record in shared.records:
        by_phase[timeline.phase(record.ended)][(record.route, record.status, record.detail)] += 1
    rows = []
    for phase in PHASES:
        routes = sorted({route for route, _, _ in by_phase[phase]})
        for route in routes:
            answers = {k: v for k, v in by_phase[phase].items() if k[0] == route}
            text = ", ".join(
                f"{status} {detail!r}: {count}"
                if status >= 400 or status == 0
                else f"{status}: {count}"
                for (_, status, detail), count in sorted(answers.items(), key=lambda i: i[0][1])
            )
            rows.append([phase, route, sum(answers.values()), text])
    writes_after = [
        r.ended
        for r in shared.records
        if r.route == "POST /products" and r.status == 201 and r.ended >= timeline.up_at
    ]
    expected = shared.expected
    return OutageReport(
        rows=rows,
        by_phase=by_phase,
        recovery_s=timeline.ready_at - timeline.up_at,
        first_write_s=(min(writes_after) - timeline.up_at) if writes_after else float("inf"),
        outage_s=timeline.start_at - timeline.down_at,
        lost=sum(1 for s, e in expected.items() if e == "present" and s not in present),
        undeleted=sum(1 for s, e in expected.items() if e == "absent" and s in present),
        phantom=sum(1 for s, e in expected.items() if e == "refused" and s in present),
        partial=sum(1 for count in present.values() if count != 1),
        same_process=same_process and server.pid == pid,
    )


def phase_summary(report: OutageReport) -> list[list[object]]:
    """One row per phase: API calls (probes apart) by answer, then the probes' answers."""
    rows = []
    for phase in PHASES:
        answers = report.by_phase.get(phase, Counter())
        calls = {k: n for k, n in answers.items() if k[0] not in PROBES}
        ok = sum(n for (_, status, _), n in calls.items() if 200 <= status < 300)
        down = sum(
            n for (_, status, detail), n in calls.items() if (status, detail) == (503, DB_DOWN)
        )

        def probe(route: str, answers: Counter = answers) -> str:
            counts = Counter({s: n for (r, s, _), n in answers.items() if r == route})
            return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items())) or "-"

        total = sum(calls.values())
        rows.append(
            [phase, total, ok, down, total - ok - down, probe("GET /readyz"), probe("GET /healthz")]
        )
    return rows


SUMMARY_HEADERS = (
    "phase",
    "API calls",
    "2xx",
    f"503 {DB_DOWN!r}",
    "other",
    "/readyz",
    "/healthz",
)


def problems(report: OutageReport) -> list[str]:
    """What the drill counts as a failure of the service."""
    found = []
    for phase, answers in report.by_phase.items():
        for (route, status, detail), count in answers.items():
            if status >= 500 and (status, detail) != (503, DB_DOWN):
                found.append(f"{phase}: {route} answered {status} {detail!r} x{count}")
            if status == 0:
                found.append(f"{phase}: {route} got no answer x{count}")
            if route == "GET /healthz" and status != 200:
                found.append(f"{phase}: /healthz answered {status} x{count}")
            if phase in ("before", "after") and status >= 500:
                found.append(f"{phase}: {route} answered {status} while the database was up")
    down = report.by_phase.get("down", Counter())
    for (route, status, detail), count in down.items():
        if route != "GET /healthz" and (status, detail) != (503, DB_DOWN):
            found.append(f"down: {route} answered {status} {detail!r} x{count}")
    if not down[("GET /readyz", 503, DB_DOWN)]:
        found.append(f"down: /readyz never answered 503 {DB_DOWN!r}")
    if not any(route not in PROBES for route, _, _ in down):
        found.append("down: no API call was answered while PostgreSQL was down (too short?)")
    if report.recovery_s == float("inf") or report.first_write_s == float("inf"):
        found.append("the service did not recover")
    if not report.same_process:
        found.append("the server process did not survive the outage")
    for name in ("lost", "undeleted", "phantom", "partial"):
        if getattr(report, name):
            found.append(f"{name}: {getattr(report, name)}")
    return found


def report(result: OutageReport) -> str:
    """Per phase; per phase and route; the timings; what SQL says against the clients."""
    timings = [
        [
            f"{result.outage_s:.1f}",
            f"{result.recovery_s:.2f}",
            f"{result.first_write_s:.2f}",
            "yes" if result.same_process else "NO",
        ]
    ]
    return "\n\n".join(
        (
            table(SUMMARY_HEADERS, phase_summary(result)),
            table(("phase", "route", "requests", "answers (status 'detail': count)"), result.rows),
            table(
                ("PostgreSQL down s", "up -> /readyz 200 s", "up -> first 201 s", "same process"),
                timings,
            ),
            f"lost {result.lost}, undeleted {result.undeleted}, phantom {result.phantom}, "
            f"partial {result.partial}",
        )
    )
