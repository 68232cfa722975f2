"""Dependencies injected into routes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from app.metrics import Metrics
from app.services import Services
from app.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise HTTPException(503, "service not ready")
    return services


def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    keys = settings.api_key_list
    if not keys:
        return
    given = (x_api_key or "").encode()
    # Compare against every key without stopping early, so timing reveals nothing.
    valid = False
    for key in keys:
        valid |= hmac.compare_digest(given, key.encode())
    if not valid:
        raise HTTPException(401, "missing or invalid API key")


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ServicesDep = Annotated[Services, Depends(get_services)]
