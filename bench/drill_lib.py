"""Shared plumbing of the failure drills (bench/drill_*.py): a real `retailklip serve` process,
throw-away PostgreSQL databases, the PostgreSQL cluster switch, images, SQL state, tables.

All traffic goes to 127.0.0.1. Everything a drill starts, it stops (servers, databases, mounts),
and a stopped PostgreSQL is always started again.
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from sqlalchemy import create_engine, inspect, text

# The same server, databases and paths as the test suite (tests/support/), not copies of them.
from tests.support.databases import create_pg_database
from tests.support.databases import drop_pg_database as drop_database  # noqa: F401 (for the drills)
from tests.support.paths import GROCERY
from tests.support.servers import SHARED_ONNX_DIR, LiveServer, settings_env

PG_HOST, PG_PORT = "127.0.0.1", "5432"


def interrupt_on_signals() -> None:
    """SIGTERM and SIGINT (even where a background shell ignores it) raise KeyboardInterrupt,
    so a drill that is stopped still runs its `finally` blocks: servers stopped, databases
    dropped, mounts removed, PostgreSQL started again."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, interrupt)


class Server(LiveServer):
    """The suite's `LiveServer` with settings as keywords, logging at warning level (the
    drills read their own numbers, not the access log), and the process's memory."""

    def __init__(self, settings: Mapping[str, object], log_path: Path) -> None:
        super().__init__(
            env=settings_env({"log_level": "warning", "onnx_dir": SHARED_ONNX_DIR, **settings}),
            log_path=log_path,
            stop_grace_s=30,
        )

    def peak_rss_mb(self) -> float:
        """VmHWM: the kernel's high-water mark of this process's resident memory."""
        return self._status_mb("VmHWM:")

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS:")

    def _status_mb(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {key} in /proc status")


def create_database() -> str:
    """A fresh PostgreSQL database; returns its SQLAlchemy URL."""
    return create_pg_database(prefix="retailklip_drill")


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
