"""Liveness, readiness and metrics."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from app.api.deps import ServiceMetricsDep
from app.api.schemas import HealthOut, ReadyOut, errors

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get("/readyz", operation_id="readyz", response_model=ReadyOut, responses=errors(503))
async def readyz(request: Request) -> JSONResponse:
    services = getattr(request.app.state, "services", None)
    if services is None:
        return JSONResponse({"detail": "service not ready"}, status_code=503)

    def ping() -> None:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except Exception:
        return JSONResponse({"detail": "database unavailable"}, status_code=503)
    if not services.index.complete:
        # A model switch in progress: answering from a half-built index would lose matches.
        detail = f"index for model {services.model_id} incomplete: reindex not finished"
        return JSONResponse({"detail": detail}, status_code=503)
    tiers = services.classifier.tiers
    return JSONResponse(
        {
            "status": "ready",
            "model": services.encoder.model_id,
            "model_name": services.settings.model,  # the setting that chose it
            "device": str(services.encoder.device),
            "runtime": services.encoder.runtime,
            "index_vectors": services.index.size,
            "shards": len(services.index.store.shards),
            # The `confident` verdict's thresholds and what they were calibrated to promise.
            "tiers": None if tiers is None else asdict(tiers),
        }
    )


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition format"}},
)
async def metrics(request: Request, metrics: ServiceMetricsDep) -> PlainTextResponse:
    services = getattr(request.app.state, "services", None)
    if services is not None:
        metrics.index_size.set(services.index.size)
        metrics.index_shards.set(len(services.index.store.shards))
        metrics.shard_rebuilds.set(services.index.rebuilds)
        metrics.log_position.set(services.index.position)
    return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
