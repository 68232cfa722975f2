"""Readiness and the index's gauges, as the probes report them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from app.encoder.loading import ServingEncoder
from app.runtime.index_sync import IndexSync
from app.runtime.metrics import ServiceMetrics


class NotReady(Exception):
    """Why this replica should get no traffic yet (`detail`: the probe's answer)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class Health:
    engine: Engine
    index: IndexSync
    encoder: ServingEncoder
    model_name: str  # the setting that chose the model
    tiers: dict[str, Any] | None  # the `confident` tier's thresholds and calibration
    detector: str | None  # the product detector's model id (None: boxes only)

    def ready(self) -> dict[str, Any]:
        """Blocking (pings the database): what /readyz answers; raises NotReady."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise NotReady("database unavailable") from exc
        if not self.index.complete:
            # A model switch in progress: answering from a half-built index would lose matches.
            model = self.index.model_id
            raise NotReady(f"index for model {model} incomplete: reindex not finished")
        return {
            "status": "ready",
            "model": self.encoder.model_id,
            "model_name": self.model_name,
            "device": str(self.encoder.device),
            "runtime": self.encoder.runtime,
            "index_vectors": self.index.size,
            "shards": len(self.index.store.shards),
            "tiers": self.tiers,
            "detector": self.detector,
        }

    def update_gauges(self, metrics: ServiceMetrics) -> None:
        metrics.index_size.set(self.index.size)
        metrics.index_shards.set(len(self.index.store.shards))
        metrics.shard_rebuilds.set(self.index.rebuilds)
        metrics.log_position.set(self.index.position)
