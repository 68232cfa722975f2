"""The failure drills (crash, database outage, load, disk full, backup under writers, a stalled
database), each
against a real
`retailklip serve`; the drills themselves are in tests/support/drills/, what they found and how
to read it in docs/DRILLS.md.

By default each runs short. `RETAILKLIP_DRILLS=full` runs them at the length docs/DRILLS.md's
figures come from (crash: 100 kill cycles of 4 writers; outage: PostgreSQL down 10 s; load:
64 clients for 180 s against the default limits; disk full: a 1 MB blob store); `-s` shows each
drill's tables as it goes (a failing drill's tables are in its captured output anyway).
`RETAILKLIP_DRILL_MODEL` picks the served model (default efficientnet-lite0):

    RETAILKLIP_DRILLS=full .venv/bin/pytest -s -p no:cacheprovider tests/drills -k sigkill
    RETAILKLIP_DRILLS=full RETAILKLIP_DRILL_MODEL=retailklip-lite0-shelf \
        .venv/bin/pytest -s -p no:cacheprovider tests/drills/test_drills.py -k overload

The outage drill stops this machine's PostgreSQL (marked exclusive: it runs alone).
"""

from __future__ import annotations

import os

import pytest

from tests.support.databases import pg_ready
from tests.support.drills import backup, crash, disk_full, load, outage, stall
from tests.support.reports import table

SCALE = os.environ.get("RETAILKLIP_DRILLS", "short")
if SCALE not in ("short", "full"):
    raise RuntimeError(f"RETAILKLIP_DRILLS must be 'short' or 'full', not {SCALE!r}")
FULL = SCALE == "full"
MODEL = os.environ.get("RETAILKLIP_DRILL_MODEL", "efficientnet-lite0")

# Each drill starts real servers (a model load each): generous limits for a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(4 * 3600 if FULL else 1800)]


def test_sigkill_during_writes_loses_nothing_acknowledged() -> None:
    def progress(row: dict[str, object]) -> None:
        print(table(crash.HEADERS, [[row[h] for h in crash.HEADERS]]).splitlines()[-1], flush=True)

    if FULL:
        rows = crash.run(cycles=100, writers=4, model=MODEL, seed=0, on_row=progress)
    else:
        rows = crash.run(cycles=2, writers=3, model=MODEL, seed=1)
    print(crash.report(rows))
    assert sum(int(r["acked creates"]) for r in rows) > 0
    assert crash.problems(rows) == []


@pytest.mark.exclusive  # stops the machine's PostgreSQL: every other test's database with it
def test_database_outage_answers_503_and_recovers_without_restart() -> None:
    try:
        if FULL:
            report = outage.run(outage=10, before=5, after=10, workers=4, model=MODEL)
        else:
            report = outage.run(outage=6, before=2, after=3, workers=3, model=MODEL)
    finally:
        assert pg_ready(), "PostgreSQL must be running again after the drill"
    print(outage.report(report))
    assert outage.problems(report) == []
    down = report.by_phase["down"]
    assert down[("GET /readyz", 503, "database unavailable")] > 0
    assert {status for route, status, _ in down if route != "GET /healthz"} == {503}
    assert report.recovery_s < 30 and report.same_process


def test_overload_answers_the_designed_503_and_memory_stays_bounded() -> None:
    # Short: 64 clients against 16 requests in flight, so the limiter must answer, never drop.
    # Full: 64 clients against the default limits for three minutes.
    if FULL:
        clients, limit = 64, None
        report = load.run(seconds=180, concurrency=clients, model=MODEL)
    else:
        clients, limit = 64, 16
        report = load.run(seconds=8, concurrency=clients, model=MODEL, max_concurrency=limit)
    print(load.report(report, clients))
    assert load.problems(report) == []
    answers = {kind for counts in report.answers.values() for kind in counts}
    if limit is not None and limit < clients:
        assert "503 server busy, retry later" in answers
    assert {"200", "201"} <= answers
    assert report.peak_rss_mb < 4096, report.peak_rss_mb


def test_full_blob_store_answers_507_and_leaves_nothing_half_written() -> None:
    size_kb = 1024 if FULL else 768
    report = disk_full.run(size_kb=size_kb, model=MODEL)
    print(disk_full.report(report, size_kb))
    assert disk_full.problems(report) == []
    assert report.refused_full > 0 and report.accepted > 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_backup_taken_under_writers_restores_complete(backend: str) -> None:
    row = backup.run(backend, model=MODEL, seeded=16 if FULL else 8, writers=3 if FULL else 2)
    print(table(backup.HEADERS, [[row[h] for h in backup.HEADERS]]))
    assert backup.problems(row) == []
    assert row["acked before"] and row["deleted before"] and row["acked during"], row


def test_a_stalled_database_stalls_no_forward_pass() -> None:
    """PostgreSQL holds the tables that name hits: classifications wait for their names, but
    the model thread does no I/O, so every photo is still embedded and searched meanwhile."""
    clients = 6
    report = stall.run(stall_s=5.0, clients=clients, model=MODEL)
    print(stall.summary(report))
    assert report.errors == []
    assert report.embedded_during >= clients  # none waited behind the stalled SQL
    assert max(report.healthz_ms) < 1000, report.healthz_ms
    assert len(report.classify_ms["during"]) == clients  # all answered once the lock went
