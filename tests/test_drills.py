"""Short versions of the failure drills in bench/ (crash, database outage, load, disk full),
each against a real `retailklip serve`. The full drills and their figures: README "Failure drills".
"""

from __future__ import annotations

import pytest

from bench import drill_crash, drill_disk_full, drill_load, drill_outage
from bench.drill_lib import pg_ready

# Each drill starts real servers (a model load each): generous limits for a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_sigkill_during_writes_loses_nothing_acknowledged() -> None:
    rows = drill_crash.run(cycles=2, writers=3, seed=1)
    assert sum(int(r["acked creates"]) for r in rows) > 0
    for row in rows:
        for column in ("lost", "undeleted", "partial", "phantom", "rows without blob"):
            assert row[column] == 0, (column, row)
        assert row["index = SQL"] == "yes", row


@pytest.mark.exclusive  # stops the machine's PostgreSQL: every other test's database with it
def test_database_outage_answers_503_and_recovers_without_restart() -> None:
    try:
        report = drill_outage.run(outage=6, before=2, after=3, workers=3)
    finally:
        assert pg_ready(), "PostgreSQL must be running again after the drill"
    assert drill_outage.problems(report) == []
    down = report.by_phase["down"]
    assert down[("GET /readyz", 503, "database unavailable")] > 0
    assert {status for route, status, _ in down if route != "GET /healthz"} == {503}
    assert report.recovery_s < 30 and report.same_process


def test_overload_answers_the_designed_503_and_memory_stays_bounded() -> None:
    # 64 clients against 16 requests in flight: the limiter must answer, never drop.
    report = drill_load.run(seconds=8, concurrency=64, max_concurrency=16)
    assert drill_load.problems(report) == []
    answers = {kind for counts in report.answers.values() for kind in counts}
    assert "503 server busy, retry later" in answers
    assert {"200", "201"} <= answers
    assert report.peak_rss_mb < 4096, report.peak_rss_mb


def test_full_blob_store_answers_507_and_leaves_nothing_half_written() -> None:
    report = drill_disk_full.run(size_kb=768)
    assert drill_disk_full.problems(report) == []
    assert report.refused_full > 0 and report.accepted > 0
