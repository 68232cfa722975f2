"""What differs between PostgreSQL and SQLite, in one place.

The service runs on both (SQLite by default, PostgreSQL in production); everything else in the
tree writes portable SQLAlchemy and asks here when the two must differ: upserts, the drivers'
parameter markers, streaming reads, and equality on metadata JSON.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

Scalar = str | int | float | bool | None


def is_sqlite_url(url: str) -> bool:
    """Before an engine exists: does this URL name an SQLite database?"""
    return make_url(url).get_backend_name() == "sqlite"


def is_postgresql(bind: Engine | Connection | Session) -> bool:
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return engine.dialect.name == "postgresql"


def upsert(session: Session, table: Any) -> Any:
    """`INSERT` that takes `.on_conflict_do_update(...)` (both dialects spell it alike)."""
    return (postgresql if is_postgresql(session) else sqlite).insert(table)


def dbapi_marker(engine: Engine) -> str:
    """The driver's own parameter marker, for SQL sent on a raw DBAPI connection."""
    return "%s" if is_postgresql(engine) else "?"


def psycopg_connection(connection: Connection) -> psycopg.Connection[Any] | None:
    """The psycopg connection under `connection` (PostgreSQL), for server-side binary cursors;
    None on SQLite."""
    raw = connection.connection.driver_connection
    return raw if isinstance(raw, psycopg.Connection) else None


def metadata_match(
    session: Session, column: Any, key: str, values: tuple[Scalar, ...]
) -> tuple[Any, Any]:
    """(has key, equals one of values) on a JSON object column's top-level `key`: numbers by
    value (1 = 1.0), strings, booleans and null by kind and value, on either database."""
    if is_postgresql(session):
        doc = sa.cast(column, JSONB)
        stored = doc.op("->")(sa.bindparam(None, key, type_=sa.Text))
        wanted = [sa.cast(sa.bindparam(None, json.dumps(v), type_=sa.Text), JSONB) for v in values]
        return doc.has_key(sa.bindparam(None, key, type_=sa.Text)), sa.or_(
            *(stored == w for w in wanted)
        )

    # SQLite: json_each() over the top-level object, so arbitrary keys need no JSON-path quoting.
    def entries() -> Any:
        return sa.func.json_each(column).table_valued("key", "type", "atom")

    each = entries()
    has_key = sa.exists().select_from(each).where(each.c.key == key)
    found = entries()
    alternatives = []
    for value in values:
        same = found.c.type.in_(_json_kind(value))
        if value is not None and not isinstance(value, bool):
            same = sa.and_(same, found.c.atom == value)
        alternatives.append(same)
    matches = sa.exists().select_from(found).where(found.c.key == key, sa.or_(*alternatives))
    return has_key, matches


def _json_kind(value: Scalar) -> tuple[str, ...]:
    """SQLite json_each() type names a stored value must have to equal `value`."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("true",) if value else ("false",)
    if isinstance(value, str):
        return ("text",)
    return ("integer", "real")
