"""Shared fixtures: real PostgreSQL and SQLite databases, the shared data set, live servers.

The helpers behind them live in `tests/support/` (bench/ and the drills in tests/support/drills
use them too). Each test folder says what its tests cover and how heavy they are, and marks
them so (`pytest -m unit`):

- `unit/`: one module or class in process: no database, no server (seconds);
- `storage/`: the SQL layer and what follows it (repository, change log, scopes, backups), on
  SQLite and PostgreSQL;
- `api/`: the HTTP contract, in process (`TestClient`) and through a live uvicorn, both
  databases; the console in headless Chromium;
- `e2e/`: the service as deployed: real model runtimes, several replicas, installs, images,
  the README's examples;
- `drills/`: outages, crashes, overload, backups under writers (`exclusive`: run alone);
- `training/`: the training package, the shelf renderer and the detector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.databases import create_pg_database, drop_pg_database, sqlite_url
from tests.support.paths import GROCERY
from tests.support.servers import LiveServer, start_server

FOLDERS = ("unit", "storage", "api", "e2e", "drills", "training")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with its folder's name."""
    for item in items:
        folder = item.path.parent.name
        if folder in FOLDERS:
            item.add_marker(folder)


@pytest.fixture(scope="session")
def grocery() -> Path:
    if not (GROCERY / "classes.csv").is_file():
        pytest.fail(f"shared data set not found at {GROCERY} (set RETAILKLIP_GROCERY_DIR)")
    return GROCERY


@pytest.fixture
def make_db_url(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    created: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return sqlite_url(tmp_path)
        url = create_pg_database()
        created.append(url)
        return url

    yield make
    for url in created:
        drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, make_db_url: Callable[[str], str]) -> str:
    return make_db_url(request.param)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start servers on demand (`live_server(data_dir=..., database_url=...)`); all stop after."""
    servers: list[LiveServer] = []

    def start(
        data_dir: Path | None = None, wait_ready: bool = True, **settings: object
    ) -> LiveServer:
        server = start_server(tmp_path, data_dir or tmp_path / "data", wait_ready, **settings)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
