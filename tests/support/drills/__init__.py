"""The failure drills (crash, database outage, load, disk full), run by tests/drills/test_drills.py:
each drives a real `retailklip serve` (tests.support.servers) and returns a report, with the
checks that decide pass or fail (`problems`) and the tables it prints (`report`).

Here: what the drills share, SQL state as the service left it and the blob files beside it.
All traffic goes to 127.0.0.1. Everything a drill starts, it stops (servers, databases, mounts),
and a stopped PostgreSQL is always started again.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from sqlalchemy import create_engine, text

from tests.support.databases import create_pg_database


def create_database() -> str:
    """A fresh PostgreSQL database for one drill; returns its SQLAlchemy URL."""
    return create_pg_database(prefix="retailklip_drill")


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Inside the block SIGTERM (and SIGINT, even where a background shell ignores it) raise
    KeyboardInterrupt, so a drill that is stopped still runs its `finally` blocks: servers
    stopped, databases dropped, mounts removed, PostgreSQL started again. The previous
    handlers come back afterwards."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
            # Every vector (images and views) is a row of `embeddings` (migration 0003).
            vectors = conn.execute(
                text("SELECT count(*) FROM embeddings WHERE model_id = :m"), {"m": model_id}
            ).scalar_one()
    finally:
        engine.dispose()
    return SqlState(products, keys, vectors)


def blob_path(blob_dir: Path, key: str) -> Path:
    return blob_dir / key[:2] / key[2:4] / key


def blob_files(blob_dir: Path) -> list[Path]:
    return [p for p in blob_dir.glob("??/??/*") if p.is_file()]
