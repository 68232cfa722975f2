"""Dependencies injected into routes: each route names the parts of the service it uses.

Everything is built once by the app's lifespan (`Services`); until it is, every dependency
below answers 503 "service not ready". They are `async def` although none awaits anything:
FastAPI runs a plain `def` dependency in its thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from app.api.middleware import role_of
from app.catalogue.products import ProductStore
from app.index.shard_store import ShardStore
from app.recognition.hit_names import HitNames
from app.runtime.inference import Inference
from app.runtime.metrics import ServiceMetrics
from app.services import Services
from app.settings import ROLES, Role, Settings


async def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


async def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise HTTPException(503, "service not ready")
    return services


async def get_settings(request: Request) -> Settings:
    return (await get_services(request)).settings


async def get_products(request: Request) -> ProductStore:
    return (await get_services(request)).products


async def get_inference(request: Request) -> Inference:
    return (await get_services(request)).inference


async def get_shards(request: Request) -> ShardStore:
    return (await get_services(request)).index.store


async def get_names(request: Request) -> HitNames:
    return (await get_services(request)).names


async def get_session_factory(request: Request) -> Callable[[], Session]:
    return (await get_services(request)).session_factory


ServiceMetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ProductsDep = Annotated[ProductStore, Depends(get_products)]
InferenceDep = Annotated[Inference, Depends(get_inference)]
ShardsDep = Annotated[ShardStore, Depends(get_shards)]
NamesDep = Annotated[HitNames, Depends(get_names)]
SessionFactoryDep = Annotated[Callable[[], Session], Depends(get_session_factory)]


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
