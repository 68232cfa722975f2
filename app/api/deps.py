"""Dependencies injected into routes: each route names the one part of the service it uses.

Everything is built once by the app's lifespan (`Services`); until it is, every dependency
below answers 503 "service not ready". They are `async def` although none awaits anything:
FastAPI runs a plain `def` dependency in its thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from app.api.middleware import role_of
from app.recognition.catalogue import Catalogue
from app.recognition.classify import Classifier
from app.recognition.registration import Registrar
from app.recognition.review import Review
from app.recognition.shelf import ShelfAudit
from app.runtime.health import Health
from app.runtime.metrics import ServiceMetrics
from app.services import Services
from app.settings import ROLES, Limits, Role


def _services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise HTTPException(503, "service not ready")
    return services


async def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


async def get_limits(request: Request) -> Limits:
    return _services(request).limits


async def get_classifier(request: Request) -> Classifier:
    return _services(request).classifier


async def get_shelf(request: Request) -> ShelfAudit:
    return _services(request).shelf


async def get_registrar(request: Request) -> Registrar:
    return _services(request).registrar


async def get_catalogue(request: Request) -> Catalogue:
    return _services(request).catalogue


async def get_review(request: Request) -> Review:
    return _services(request).review


async def get_health(request: Request) -> Health | None:
    """None until the lifespan has built the service (the probes answer that themselves)."""
    services: Services | None = getattr(request.app.state, "services", None)
    return None if services is None else services.health


ServiceMetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
ClassifierDep = Annotated[Classifier, Depends(get_classifier)]
RegistrarDep = Annotated[Registrar, Depends(get_registrar)]
ShelfDep = Annotated[ShelfAudit, Depends(get_shelf)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
ReviewDep = Annotated[Review, Depends(get_review)]
HealthDep = Annotated[Health | None, Depends(get_health)]


class RoleCheck:
    """A route's required role (a dependency): 403 for a key whose role is lower. Without
    configured keys the middleware sets no role and everything is allowed."""

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(self, request: Request) -> None:
        granted = role_of(request.scope)
        if granted is not None and ROLES.index(granted) < ROLES.index(self.role):
            raise HTTPException(
                403,
                f"this API key's role is {granted}; "
                f"{request.method} {request.url.path} needs {self.role}",
            )


def requires(role: Role) -> Any:
    """`dependencies=[requires("edit")]` on a route: what its key must be allowed."""
    return Depends(RoleCheck(role))


def route_role(dependencies: list[Any]) -> Role:
    """The role a route's dependency list requires (`classify`: any valid key)."""
    for dependency in dependencies:
        call = getattr(dependency, "call", None) or getattr(dependency, "dependency", None)
        if isinstance(call, RoleCheck):
            return call.role
    return "classify"
