"""Shared fixtures: real PostgreSQL and SQLite databases, the shared data set, live servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
GROCERY = Path(os.environ.get("RETAILKLIP_GROCERY_DIR", REPO.parent / "shared/data/grocery-store"))
PG_ADMIN_URL = os.environ.get("RETAILKLIP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def grocery() -> Path:
    if not (GROCERY / "classes.csv").is_file():
        pytest.fail(f"shared data set not found at {GROCERY} (set RETAILKLIP_GROCERY_DIR)")
    return GROCERY


def _create_pg_database() -> str:
    """A fresh database per use; an unreachable server fails the test, never skips it."""
    name = f"retailklip_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"


def _drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_db_url(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    created: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'db-{uuid.uuid4().hex[:6]}.sqlite'}"
        url = _create_pg_database()
        created.append(url)
        return url

    yield make
    for url in created:
        _drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, make_db_url: Callable[[str], str]) -> str:
    return make_db_url(request.param)


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.25) -> bool:
    """Poll until `condition()` holds; for changes another process makes on its own schedule."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    """`retailklip serve` in a subprocess: real uvicorn, real HTTP."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 600, ready: bool = True) -> LiveServer:
        """Wait (model load: slow on a busy machine) until /readyz says ready, or with
        `ready=False` until the app answers at all (a replica waiting for a reindex)."""
        env = {**os.environ, **self.env, "RETAILKLIP_PORT": str(self.port)}
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                answer = httpx.get(f"{self.url}/readyz", timeout=2)
                if answer.status_code == 200 or (not ready and "index for model" in answer.text):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-3000:] if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_server(
    log_dir: Path, data_dir: Path, wait_ready: bool = True, **settings: object
) -> LiveServer:
    env = {
        "RETAILKLIP_DATA_DIR": str(data_dir),
        "RETAILKLIP_MODEL": "efficientnet-lite0",
        "RETAILKLIP_DEVICE": "cpu",
        # The default runtime exports an ONNX graph per model at first start: share the export
        # between the suite's servers (and runs) instead of paying it in every fresh data dir.
        "RETAILKLIP_ONNX_DIR": str(REPO / "runs/test-onnx"),
    }
    env.update({f"RETAILKLIP_{k.upper()}": str(v) for k, v in settings.items()})
    server = LiveServer(env=env, log_path=log_dir / f"server-{uuid.uuid4().hex[:6]}.log")
    return server.start(ready=wait_ready)


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
