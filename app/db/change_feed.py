"""The SQL side of following the change log: `ChangeFeed` (app/index/log_follower.py) over
SQLAlchemy sessions, reading one model's log entries and embedding rows as plain columns."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import changelog
from app.db.dialect import psycopg_connection
from app.db.tables import Embedding
from app.index.log_follower import Head, LogEntry, Rows

ID_BATCH = 5000  # image ids per IN (...) when re-reading the rows entries name
STREAM_ROWS = 20_000  # rows per fetch when reading a whole model (server-side cursor)


class SqlChangeFeed:
    def __init__(self, session_factory: Callable[[], Session], model_id: str, dim: int) -> None:
        self.session_factory = session_factory
        self.model_id = model_id
        self.dim = dim

    @contextlib.contextmanager
    def reading(self) -> Iterator[SqlChangeReader]:
        with self.session_factory() as session:
            yield SqlChangeReader(session, self.model_id, self.dim)


class SqlChangeReader:
    def __init__(self, session: Session, model_id: str, dim: int) -> None:
        self.session = session
        self.model_id = model_id
        self.dim = dim

    def head(self) -> Head:
        return changelog.head(self.session, self.model_id)

    def entries_after(self, position: int, limit: int) -> list[LogEntry]:
        return changelog.entries_after(self.session, self.model_id, position, limit)

    def count(self) -> int:
        query = (
            select(func.count()).select_from(Embedding).where(Embedding.model_id == self.model_id)
        )
        return int(self.session.scalar(query) or 0)

    def missing_images(self) -> int:
        return changelog.missing_images(self.session, self.model_id)

    def rows_of(self, image_ids: np.ndarray) -> Rows:
        rows: list[Any] = []
        for start in range(0, len(image_ids), ID_BATCH):
            rows += self.session.execute(
                select(Embedding.image_id, Embedding.code, Embedding.shard, Embedding.vector).where(
                    Embedding.model_id == self.model_id,
                    Embedding.image_id.in_(image_ids[start : start + ID_BATCH].tolist()),
                )
            ).all()
        return self._columns(rows)

    def stream(self) -> Iterator[Rows]:
        """The model's rows, STREAM_ROWS at a time, without ORM objects. On PostgreSQL (psycopg)
        a named server-side cursor in binary format: bytea arrives as raw bytes, not hex text
        twice their size."""
        connection = self.session.connection()
        raw = psycopg_connection(connection)
        if raw is not None:
            with raw.cursor(name=f"rk_stream_{id(self)}", binary=True) as cursor:
                cursor.itersize = STREAM_ROWS
                cursor.execute(
                    "SELECT image_id, code, shard, vector FROM embeddings WHERE model_id = %s",
                    (self.model_id,),
                )
                while rows := cursor.fetchmany(STREAM_ROWS):
                    yield self._columns(rows)
            return
        result = connection.execute(
            select(Embedding.image_id, Embedding.code, Embedding.shard, Embedding.vector)
            .where(Embedding.model_id == self.model_id)
            .execution_options(stream_results=True, yield_per=STREAM_ROWS)
        )
        for part in result.partitions():
            yield self._columns(part)

    def _columns(self, rows: Sequence[Sequence[Any]]) -> Rows:
        if not rows:
            empty = np.zeros(0, np.int64)
            return Rows(empty, empty, empty, np.zeros((0, self.dim), "<f2"))
        image_ids, codes, shard_nos, blobs = zip(*rows, strict=True)
        return Rows(
            np.array(image_ids, np.int64),
            np.array(codes, np.int64),
            np.array(shard_nos, np.int64),
            np.frombuffer(b"".join(blobs), dtype="<f2").reshape(-1, self.dim),
        )
