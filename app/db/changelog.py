"""The ordered change log replicas follow (design: docs/DEPLOYMENT.md, "Change log").

Every write appends, per model it touched, one entry holding the vector ids it added or removed,
in the same transaction as the write. Sequence numbers come from a per-model counter row
(`log_heads`) bumped with an upsert: the row lock is held to commit, so writers of one model
commit in sequence order and a reader that sees entry n has seen every entry before it. (A
database sequence would not do: PostgreSQL can commit n+1 before n, and a replica reading in
between would skip n for good.) Entries are pruned after a retention period; a replica whose
position is older than what was pruned rebuilds from SQL.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from app.db.dialect import dbapi_marker, is_postgresql, upsert
from app.db.log_notices import notify
from app.db.session import rowcount
from app.db.tables import ChangeLogEntry, Embedding, LogHead, ReferenceImage, Replica
from app.index.log_follower import Head, LogEntry


def append(session: Session, model_id: str, op: str, vector_ids: np.ndarray) -> int:
    """Append one entry in the caller's transaction; returns its sequence number.

    Call it last before commit: from here to commit, other writers of this model wait."""
    stmt = upsert(session, LogHead).values(model_id=model_id, last_seq=1, pruned_seq=0)
    stmt = stmt.on_conflict_do_update(
        index_elements=["model_id"], set_={"last_seq": LogHead.last_seq + 1}
    ).returning(LogHead.last_seq)
    seq = int(session.execute(stmt).scalar_one())
    session.add(
        ChangeLogEntry(
            model_id=model_id,
            seq=seq,
            op=op,
            vector_ids=np.asarray(vector_ids, dtype="<i8").tobytes(),
        )
    )
    session.flush()
    notify(session, model_id)  # replicas hear it when this transaction commits
    return seq


def append_many(session: Session, changes: dict[str, tuple[str, np.ndarray]]) -> dict[str, int]:
    """One entry per model, counters taken in model order so concurrent writers cannot deadlock."""
    return {model: append(session, model, *changes[model]) for model in sorted(changes)}


def head(session: Session, model_id: str) -> Head:
    row = session.execute(
        select(LogHead.last_seq, LogHead.pruned_seq).where(LogHead.model_id == model_id)
    ).first()
    return Head(int(row[0]), int(row[1])) if row else Head(0, 0)


class HeadReader:
    """One model's last sequence number over a DBAPI connection of its own. It is read beside
    every classification (app/recognition/hit_names.py), where an ORM session's ~0.4 ms of Python,
    holding the GIL, slowed the very forward pass it runs beside; plain DBAPI takes ~10 us
    (SQLite) to ~80 us (PostgreSQL). Not thread-safe: one thread uses it."""

    def __init__(self, engine: Engine, model_id: str) -> None:
        self.engine = engine
        self.model_id = model_id
        marker = dbapi_marker(engine)
        self.sql = f"SELECT last_seq FROM {LogHead.__tablename__} WHERE model_id = {marker}"
        self.connection: Any = None

    def __call__(self) -> int:
        if self.connection is None:
            pooled = self.engine.raw_connection()
            connection = pooled.driver_connection  # the driver's own (sqlite3 / psycopg)
            pooled.detach()  # ours for good, outside the pool's checkout and reset
            if is_postgresql(self.engine):
                # One statement per read, no transaction left open between reads.
                connection.autocommit = True  # type: ignore[union-attr]
            self.connection = connection
        try:
            cursor = self.connection.cursor()
            cursor.execute(self.sql, (self.model_id,))
            row = cursor.fetchone()
            cursor.close()
        except Exception:
            self.close()  # reconnect on the next read (the database may be back by then)
            raise
        return int(row[0]) if row else 0

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def entries_after(session: Session, model_id: str, position: int, limit: int) -> list[LogEntry]:
    rows = session.execute(
        select(ChangeLogEntry.seq, ChangeLogEntry.op, ChangeLogEntry.vector_ids)
        .where(ChangeLogEntry.model_id == model_id, ChangeLogEntry.seq > position)
        .order_by(ChangeLogEntry.seq)
        .limit(limit)
    ).all()
    return [
        LogEntry(int(s), op, np.frombuffer(ids, dtype="<i8").astype(np.int64))
        for s, op, ids in rows
    ]


def prune(session: Session, retention_s: float, now: datetime | None = None) -> int:
    """Delete entries (and replica heartbeats) older than the retention, every model; returns
    how many entries went."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=retention_s)
    pruned = 0
    for model_id, through in session.execute(
        select(ChangeLogEntry.model_id, func.max(ChangeLogEntry.seq))
        .where(ChangeLogEntry.created_at < cutoff)
        .group_by(ChangeLogEntry.model_id)
    ).all():
        pruned += (
            rowcount(
                session.execute(
                    delete(ChangeLogEntry).where(
                        ChangeLogEntry.model_id == model_id, ChangeLogEntry.seq <= through
                    )
                )
            )
            or 0
        )
        session.execute(
            update(LogHead)
            .where(LogHead.model_id == model_id, LogHead.pruned_seq < through)
            .values(pruned_seq=through)
        )
    # Heartbeats of replicas gone that long: each process start registers a new id.
    session.execute(delete(Replica).where(Replica.seen_at < cutoff))
    session.commit()
    return pruned


def missing_images(session: Session, model_id: str) -> int:
    """Reference images without a vector of this model: a reindex to it has not finished.

    Two counts, not an anti-join: (image, model, code) is a primary key and rows die with
    their image, so equal counts mean every image is covered."""
    images = session.scalar(select(func.count()).select_from(ReferenceImage)) or 0
    embedded = (
        session.scalar(
            select(func.count())
            .select_from(Embedding)
            .where(Embedding.model_id == model_id, Embedding.code == 0)
        )
        or 0
    )
    return max(0, images - embedded)


def new_replica_id() -> str:
    return uuid.uuid4().hex


def heartbeat(session: Session, replica_id: str, model_id: str, position: int, ready: bool) -> None:
    values = {
        "model_id": model_id,
        "position": position,
        "ready": ready,
        "seen_at": datetime.now(UTC),
    }
    stmt = upsert(session, Replica).values(replica_id=replica_id, **values)
    session.execute(stmt.on_conflict_do_update(index_elements=["replica_id"], set_=values))
    session.commit()
