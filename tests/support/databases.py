"""Throw-away databases: fresh PostgreSQL ones on the local server, SQLite files."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

PG_ADMIN_URL = os.environ.get("RETAILKLIP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_pg_database(prefix: str = "retailklip_test") -> str:
    """A fresh database; returns its SQLAlchemy URL. An unreachable server raises (a test
    fails, never skips)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"


def drop_pg_database(url: str) -> None:
    """Drop a database made by `create_pg_database`, closing any sessions still in it."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(directory: Path) -> str:
    """A new SQLite file under `directory` (created on first connect)."""
    return f"sqlite:///{directory / f'db-{uuid.uuid4().hex[:6]}.sqlite'}"


@contextmanager
def backend_database(backend: str) -> Iterator[str]:
    """The `database_url` setting for a service on `backend`: "" on SQLite (the service's own
    file in its data dir), a fresh PostgreSQL database on "postgresql", dropped afterwards."""
    if backend == "sqlite":
        yield ""
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def pg_ready() -> bool:
    """The PostgreSQL server of PG_ADMIN_URL accepts connections (pg_isready)."""
    where = urlsplit(PG_ADMIN_URL)
    probe = ["pg_isready", "-q", "-h", where.hostname or "127.0.0.1", "-p", str(where.port or 5432)]
    return subprocess.run(probe, check=False).returncode == 0


def pg_cluster(action: str) -> None:
    """Stop or start this machine's PostgreSQL cluster (Debian's pg_ctlcluster); starting a
    cluster that is up already is a no-op, so a `finally` can always start it. For the outage
    drill: every other user of this PostgreSQL sees the outage too."""
    if action == "start" and pg_ready():
        return
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=120,
    )
    if action == "start":
        deadline = time.monotonic() + 60
        while not pg_ready():
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not come back within 60 s")
            time.sleep(0.2)
