"""Replica heartbeats and log pruning: what every serving process reports to the others.

Each process registers under an id of its own in `replicas` (model, log position, ready), which
`retailklip drop-model` reads to refuse dropping a model still served. Any replica may prune
the change log; each does so at most every PRUNE_INTERVAL_S.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from app.db import changelog

PRUNE_INTERVAL_S = 300.0  # any replica prunes the log, at most this often
HEARTBEAT_S = 10.0  # `retailklip drop-model` waits minutes, not seconds


class ReplicaRegistry:
    def __init__(
        self,
        session_factory: Callable[[], Session],
        model_id: str,
        log_retention_s: float = 7 * 86400,
    ) -> None:
        self.session_factory = session_factory
        self.model_id = model_id
        self.log_retention_s = log_retention_s
        self.replica_id = changelog.new_replica_id()
        self._last_beat = self._last_prune = -float("inf")
        self._reported_ready = False

    def report(self, position: int, ready: bool) -> None:
        """Heartbeat when due (at once when readiness changed), and prune the log when due.
        Called by one thread (the sync loop): no lock."""
        now = time.monotonic()
        beat = now - self._last_beat >= HEARTBEAT_S or ready != self._reported_ready
        prune = now - self._last_prune >= PRUNE_INTERVAL_S
        if not beat and not prune:
            return
        with self.session_factory() as session:
            if beat:
                self._last_beat, self._reported_ready = now, ready
                changelog.heartbeat(session, self.replica_id, self.model_id, position, ready)
            if prune:
                self._last_prune = now
                changelog.prune(session, self.log_retention_s)
