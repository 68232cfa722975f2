"""Dependencies injected into routes: each route names the parts of the service it uses.

Everything is built once by the app's lifespan (`Services`); until it is, every dependency
below answers 503 "service not ready".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from app.catalogue import Catalogue
from app.index.shards import ShardSet
from app.inference import Inference
from app.metrics import ServiceMetrics
from app.services import Services
from app.settings import Settings


def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise HTTPException(503, "service not ready")
    return services


def get_settings(request: Request) -> Settings:
    return get_services(request).settings


def get_catalogue(request: Request) -> Catalogue:
    return get_services(request).catalogue


def get_inference(request: Request) -> Inference:
    return get_services(request).inference


def get_shards(request: Request) -> ShardSet:
    return get_services(request).shards


def get_session_factory(request: Request) -> Callable[[], Session]:
    return get_services(request).session_factory


ServiceMetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
InferenceDep = Annotated[Inference, Depends(get_inference)]
ShardsDep = Annotated[ShardSet, Depends(get_shards)]
SessionFactoryDep = Annotated[Callable[[], Session], Depends(get_session_factory)]
