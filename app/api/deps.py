"""Dependencies injected into routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.metrics import ServiceMetrics
from app.services import Services


def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise HTTPException(503, "service not ready")
    return services


ServiceMetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
ServicesDep = Annotated[Services, Depends(get_services)]
