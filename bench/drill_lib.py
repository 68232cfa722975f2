"""Shared plumbing of the failure drills (bench/drill_*.py): a real `retailklip serve` process,
throw-away PostgreSQL databases, the PostgreSQL cluster switch, images, SQL state, tables.

All traffic goes to 127.0.0.1. Everything a drill starts, it stops (servers, databases, mounts),
and a stopped PostgreSQL is always started again.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from PIL import Image
from sqlalchemy import create_engine, inspect, text

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("RETAILKLIP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST, PG_PORT = "127.0.0.1", "5432"
GROCERY = Path(os.environ.get("RETAILKLIP_GROCERY_DIR", REPO.parent / "shared/data/grocery-store"))


def interrupt_on_signals() -> None:
    """SIGTERM and SIGINT (even where a background shell ignores it) raise KeyboardInterrupt,
    so a drill that is stopped still runs its `finally` blocks: servers stopped, databases
    dropped, mounts removed, PostgreSQL started again."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, interrupt)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """`retailklip serve` in a subprocess on 127.0.0.1, settings as RETAILKLIP_* variables."""

    settings: dict[str, object]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 600) -> float:
        """Start and wait for /readyz; returns the seconds it took."""
        env = {**os.environ, "RETAILKLIP_LOG_LEVEL": "warning", "RETAILKLIP_PORT": str(self.port)}
        env.update({f"RETAILKLIP_{k.upper()}": str(v) for k, v in self.settings.items()})
        begin = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while time.monotonic() - begin < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited ({self.process.returncode}): {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - begin
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server not ready after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a power cut or an OOM kill."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def peak_rss_mb(self) -> float:
        """VmHWM: the kernel's high-water mark of this process's resident memory."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc status")


def create_database() -> str:
    """A fresh PostgreSQL database; returns its SQLAlchemy URL."""
    name = f"retailklip_drill_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_ready() -> bool:
    probe = ["pg_isready", "-q", "-h", PG_HOST, "-p", PG_PORT]
    return subprocess.run(probe, check=False).returncode == 0


def pg_cluster(action: str) -> None:
    """Stop or start this machine's PostgreSQL cluster (Debian's pg_ctlcluster); starting a
    cluster that is up already is a no-op, so a `finally` can always start it."""
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


@contextlib.contextmanager
def postgres_stopped() -> Iterator[None]:
    """PostgreSQL is down inside the block and always up again after it, even on errors."""
    pg_cluster("stop")
    try:
        yield
    finally:
        pg_cluster("start")


def noise_jpeg(rng: random.Random, side: int = 40) -> bytes:
    """A small JPEG whose bytes are (almost surely) unique: random pixels."""
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def grocery_photos(split: str = "test", limit: int = 64) -> list[bytes]:
    """Real shelf photos, read in place from the shared data set."""
    paths = sorted((GROCERY / split).rglob("*.jpg"))
    if not paths:
        raise RuntimeError(f"no photos under {GROCERY / split} (set RETAILKLIP_GROCERY_DIR)")
    step = max(1, len(paths) // limit)
    return [p.read_bytes() for p in paths[::step][:limit]]


@dataclass(frozen=True)
class SqlState:
    products: dict[str, int]  # sku -> image count
    blob_keys: list[str]
    vectors: int  # searchable vectors of `model_id` (images + derived views)


def sql_state(url: str, model_id: str) -> SqlState:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            products = dict(
                conn.execute(
                    text(
                        "SELECT p.sku, count(r.id) FROM products p "
                        "LEFT JOIN reference_images r ON r.product_id = p.id GROUP BY p.sku"
                    )
                ).all()
            )
            keys = list(conn.execute(text("SELECT blob_key FROM reference_images")).scalars())
            # Since migration 0003 every vector (images and views) is a row of `embeddings`.
            tables = (
                ("embeddings",)
                if inspect(conn).has_table("embeddings")
                else (
                    "reference_images",
                    "reference_views",
                )
            )
            vectors = 0
            for table in tables:
                if inspect(conn).has_table(table):
                    vectors += conn.execute(
                        text(f"SELECT count(*) FROM {table} WHERE model_id = :m"), {"m": model_id}
                    ).scalar_one()
    finally:
        engine.dispose()
    return SqlState(products, keys, vectors)


def blob_path(blob_dir: Path, key: str) -> Path:
    return blob_dir / key[:2] / key[2:4] / key


def blob_files(blob_dir: Path) -> list[Path]:
    return [p for p in blob_dir.glob("??/??/*") if p.is_file()]


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (it reads as plain text too, and pastes into the README)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
