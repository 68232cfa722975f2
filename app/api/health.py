"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from app.api.deps import HealthDep, ServiceMetricsDep
from app.api.schemas import HealthOut, ReadyOut, errors
from app.runtime.health import NotReady

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get("/readyz", operation_id="readyz", response_model=ReadyOut, responses=errors(503))
async def readyz(health: HealthDep) -> JSONResponse:
    if health is None:
        return JSONResponse({"detail": "service not ready"}, status_code=503)
    try:
        return JSONResponse(await run_in_threadpool(health.ready))
    except NotReady as exc:
        return JSONResponse({"detail": exc.detail}, status_code=503)


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition format"}},
)
async def metrics(health: HealthDep, metrics: ServiceMetricsDep) -> PlainTextResponse:
    if health is not None:
        health.update_gauges(metrics)
    return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
