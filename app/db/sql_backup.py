"""Consistent copies of the SQL state while writers run, and their restore into an empty database.

- SQLite: the online backup API (`sqlite3.Connection.backup`) copies the live file page by page
  under one read transaction, so the copy is one committed state (WAL lets writers go on); a
  plain file copy of a live database can be torn.
- PostgreSQL: `pg_dump -Fc` in a snapshot this module exports (`pg_export_snapshot()`), and the
  blob keys and row counts are read in that same snapshot, so they describe exactly the dump.
  `pg_dump` comes from PostgreSQL's client package (Debian: `postgresql-client`), of the
  server's major version or newer.

`Snapshot` says what the copy holds; the blob copy and the manifest are app/cli/backup.py's.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, delete, func, inspect, select, text

from app.db.dialect import is_postgresql
from app.db.tables import Base, Embedding, Product, ProductBarcode, ReferenceImage, ReviewItem

SQLITE_FILE = "database.sqlite"
PG_DUMP_FILE = "database.dump"
COUNTED = {
    "products": Product,
    "reference_images": ReferenceImage,
    "embeddings": Embedding,
    "product_barcodes": ProductBarcode,
    "review_items": ReviewItem,
}


class BackupError(RuntimeError):
    """A backup or restore that cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Snapshot:
    dialect: str  # "sqlite" | "postgresql"
    file: str  # the copy's file name inside the backup directory
    revision: str | None  # the schema's Alembic revision in the copy
    counts: dict[str, int]
    blob_keys: list[str]  # reference images' bytes
    review_keys: list[str]  # the review queue's photos


def _counts(conn: Connection) -> dict[str, int]:
    return {
        name: int(conn.scalar(select(func.count()).select_from(table)) or 0)
        for name, table in COUNTED.items()
    }


def _describe(conn: Connection, dialect: str, file: str) -> Snapshot:
    counts = _counts(conn)
    revision = conn.scalar(text("SELECT version_num FROM alembic_version"))
    keys = list(conn.scalars(select(ReferenceImage.blob_key).distinct().order_by("blob_key")))
    review = list(conn.scalars(select(ReviewItem.photo_key).order_by("photo_key")))
    return Snapshot(dialect, file, revision, counts, keys, review)


def _sqlite_path(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def _libpq(engine: Engine) -> tuple[str, dict[str, str]]:
    """The database as a libpq URL for pg_dump/pg_restore, the password in the environment
    rather than on a command line other users can read."""
    url = engine.url
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(argv: list[str], env: dict[str, str]) -> None:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise BackupError(
            f"{argv[0]} not found: install PostgreSQL's client tools (Debian: postgresql-client) "
            "of the server's major version or newer"
        ) from exc
    if done.returncode != 0:
        raise BackupError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")


def copy_sql(engine: Engine, directory: Path) -> Snapshot:
    """Write one consistent copy of the database into `directory`; returns what it holds."""
    if is_postgresql(engine):
        target = directory / PG_DUMP_FILE
        dsn, env = _libpq(engine)
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                exported = conn.scalar(text("SELECT pg_export_snapshot()"))
                described = _describe(conn, "postgresql", PG_DUMP_FILE)
                _run(
                    ["pg_dump", "-Fc", f"--snapshot={exported}", "-f", str(target), dsn],
                    env,
                )
        _fsync(target)
        return described
    target = directory / SQLITE_FILE
    source = sqlite3.connect(_sqlite_path(engine), timeout=30)
    try:
        with contextlib.closing(sqlite3.connect(target)) as copy:
            source.backup(copy)  # all pages in one step: one read transaction, one state
    finally:
        source.close()
    _fsync(target)
    copy_engine = _sqlite_engine(target)
    try:
        with copy_engine.connect() as conn:
            return _describe(conn, "sqlite", SQLITE_FILE)
    finally:
        copy_engine.dispose()


def rows_held(engine: Engine) -> dict[str, int]:
    """Rows in each table the service writes (every table but Alembic's), those with any."""
    present = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        found = {
            table.name: int(conn.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
            if table.name in present
        }
    return {name: n for name, n in found.items() if n}


def check_restorable(engine: Engine, source_dialect: str) -> None:
    """Raise BackupError unless `engine`'s database can take a copy of a `source_dialect`
    database: the same dialect, and empty (no row in any table the service writes)."""
    dialect = "postgresql" if is_postgresql(engine) else "sqlite"
    if source_dialect != dialect:
        raise BackupError(
            f"this backup is of a {source_dialect} database: it restores into "
            f"{source_dialect}, not {dialect}"
        )
    held = rows_held(engine)
    if held:
        rows = ", ".join(f"{name}: {n}" for name, n in held.items())
        raise BackupError(
            f"the target database holds rows ({rows}): restore into an empty database"
        )


def restore_sql(engine: Engine, source: Path) -> None:
    """Load the copy `copy_sql` wrote (`source`) into `engine`'s database, which
    `check_restorable` has accepted."""
    if is_postgresql(engine):
        dsn, env = _libpq(engine)
        has_tables = bool(inspect(engine).get_table_names())
        clean = ["--clean", "--if-exists"] if has_tables else []
        engine.dispose()  # pg_restore --clean drops tables our pooled connections may hold
        _run(
            [
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                *clean,
                "-d",
                dsn,
                str(source),
            ],
            env,
        )
        return
    path = _sqlite_path(engine)
    engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.closing(sqlite3.connect(source)) as copy,
        contextlib.closing(sqlite3.connect(path, timeout=30)) as live,
    ):
        copy.backup(live)


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return _counts(conn)


def blob_keys(engine: Engine) -> Iterator[str]:
    with engine.connect() as conn:
        yield from conn.scalars(select(ReferenceImage.blob_key).distinct())


def drop_review_items(engine: Engine, photo_keys: set[str]) -> int:
    """Delete the review items whose photos the backup could not copy; how many went."""
    if not photo_keys:
        return 0
    with engine.begin() as conn:
        gone = conn.execute(delete(ReviewItem).where(ReviewItem.photo_key.in_(sorted(photo_keys))))
        return int(gone.rowcount)


def review_keys(engine: Engine) -> Iterator[str]:
    with engine.connect() as conn:
        yield from conn.scalars(select(ReviewItem.photo_key))


def _sqlite_engine(path: Path) -> Engine:
    return create_engine(f"sqlite:///{path}")  # a plain reader: no pragmas, no WAL files


def _fsync(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())
