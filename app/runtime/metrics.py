"""Prometheus metrics, in a registry owned by one app instance (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# The stages of a classification timed by app/runtime/inference.py (`ServiceMetrics.stages`).
STAGES = ("decode", "forward", "search")


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "retailklip_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "retailklip_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "retailklip_encoder_batch_size",
            "Images per encoder forward pass (micro-batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.stages = Histogram(
            "retailklip_stage_duration_seconds",
            "Seconds per stage of recognition, observed by the inference runtime: decode (one "
            "upload decoded and preprocessed, views included for a reference), forward (one "
            "encoder forward pass, per batch), search (FAISS search and naming the hits, once "
            "per batch and options)",
            ["stage"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        # Every stage exported from the start (zero counts), and no label lookup per request.
        self._stage = {stage: self.stages.labels(stage) for stage in STAGES}
        self.index_size = Gauge(
            "retailklip_index_vectors", "Vectors searchable in this process", registry=self.registry
        )
        self.index_shards = Gauge(
            "retailklip_index_shards", "FAISS shards held by this process", registry=self.registry
        )
        self.shard_rebuilds = Gauge(
            "retailklip_index_shard_rebuilds",
            "Times this process read its model's vectors from SQL in full since start",
            registry=self.registry,
        )
        self.log_position = Gauge(
            "retailklip_index_log_position",
            "Last change-log entry of this model applied to this process's shards",
            registry=self.registry,
        )

    def observe_stage(self, stage: str, seconds: float) -> None:
        """One stage's duration (`STAGES`) of one request or batch."""
        self._stage[stage].observe(seconds)
