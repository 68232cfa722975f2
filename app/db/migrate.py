"""Alembic upgrades and the start-up schema check."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from app.db.dialect import is_postgresql
from app.db.session import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Any fixed number: replicas starting together on PostgreSQL take turns to migrate.
ADVISORY_LOCK_ID = 0x52_4B_4C_50


class SchemaOutOfDate(RuntimeError):
    pass


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_head(url: str) -> None:
    engine = make_engine(url)
    try:
        if is_postgresql(engine):
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
                try:
                    cfg = alembic_config(url)
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                    conn.commit()
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
                    conn.commit()
        else:
            with engine.begin() as conn:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
    finally:
        engine.dispose()


def open_database(url: str, auto_migrate: bool) -> Engine:
    """Migrate (if allowed) and return an engine on a schema at head, or refuse."""
    if auto_migrate:
        upgrade_to_head(url)
    engine = make_engine(url)
    check_at_head(engine, url)
    return engine


def check_at_head(engine: Engine, url: str) -> None:
    current, head = current_revision(engine), head_revision(url)
    if current != head:
        raise SchemaOutOfDate(
            f"database schema is at {current or 'nothing'}, code expects {head}: "
            "run `retailklip migrate` (or set RETAILKLIP_AUTO_MIGRATE=true)"
        )
