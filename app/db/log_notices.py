"""Push for the change log on PostgreSQL: LISTEN/NOTIFY.

Every append notifies the model's id on CHANNEL inside the writer's transaction, so PostgreSQL
delivers it only once the write has committed (and never for one that rolled back): a replica
that hears it and syncs reads the committed entry, never half of it. `LogListener` holds one
connection in LISTEN on a thread of its own and calls back for its model. Notifications may be
lost (the connection drops, the replica was busy): the periodic sync stays as the fallback, and
SQLite has only that.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from app.db.dialect import is_postgresql

CHANNEL = "retailklip_log"
RETRY_S = 2.0  # after a lost connection; the poll covers the gap

log = logging.getLogger(__name__)


def notify(session: Session, model_id: str) -> None:
    """In the caller's transaction: delivered at commit, dropped on rollback."""
    if is_postgresql(session):
        session.execute(
            text("SELECT pg_notify(:channel, :model)"), {"channel": CHANNEL, "model": model_id}
        )


class LogListener:
    def __init__(self, engine: Engine, model_id: str, on_change: Callable[[], None]) -> None:
        self.engine = engine
        self.model_id = model_id
        self.on_change = on_change
        self.heard = 0  # notifications for our model, for tests and metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start listening (PostgreSQL only); False where there is nothing to listen to."""
        if not is_postgresql(self.engine):
            return False
        self._thread = threading.Thread(target=self._run, name="log-listener", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            connection: Any = None
            try:
                pooled = self.engine.raw_connection()
                connection = pooled.driver_connection  # psycopg's own
                pooled.detach()  # ours, outside the pool, for as long as we listen
                connection.autocommit = True
                connection.execute(f"LISTEN {CHANNEL}")
                while not self._stop.is_set():
                    for notice in connection.notifies(timeout=0.5):
                        if notice.payload == self.model_id:
                            self.heard += 1
                            self.on_change()
            except Exception as exc:  # the database went away: the poll carries on meanwhile
                log.warning("change-log listener lost its connection (%s); retrying", exc)
                self._stop.wait(RETRY_S)
            finally:
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:
                        log.debug("closing the listener's connection failed", exc_info=True)
