"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from app.api.deps import MetricsDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
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
    return JSONResponse(
        {
            "status": "ready",
            "model": services.encoder.model_id,
            "device": str(services.encoder.device),
            "index_vectors": services.shards.size,
            "shards": len(services.shards.shards),
        }
    )


@router.get("/metrics")
async def metrics(request: Request, metrics: MetricsDep) -> Response:
    services = getattr(request.app.state, "services", None)
    if services is not None:
        metrics.index_size.set(services.shards.size)
        metrics.index_shards.set(len(services.shards.shards))
        metrics.shard_rebuilds.set(services.shards.rebuilds)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
