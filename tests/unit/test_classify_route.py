"""`POST /classify` has one entry point: the declared route, with every dependency FastAPI
solves for it. A dependency added to it (a rate limit, an audit log) is added here too, and no
middleware answers the route beneath the framework, so no request can skip one."""

from __future__ import annotations

from pathlib import Path

from fastapi.dependencies.models import Dependant

from app.api.classify import declared_route
from app.api.middleware import (
    ApiKeyMiddleware,
    BodyGuardMiddleware,
    ConcurrencyLimitMiddleware,
    MetricsMiddleware,
)
from app.main import create_app
from app.settings import Settings


def dependency_names(dependant: Dependant) -> list[str]:
    names: list[str] = []
    for sub in dependant.dependencies:
        names.append(getattr(sub.call, "__name__", repr(sub.call)))
        names += dependency_names(sub)
    return names


def test_the_classify_route_solves_exactly_these_dependencies() -> None:
    route = declared_route()
    assert route.path == "/classify" and route.methods == {"POST"}
    assert sorted(dependency_names(route.dependant)) == sorted(
        [
            "get_classifier",
            "get_review",
            "get_limits",
            "classify_options",
            "get_limits",
            "search_scope",
        ]
    ), dependency_names(route.dependant)
    fields = {param.name for param in route.dependant.body_params}
    assert fields == {"image", "boxes"}, fields


def test_no_middleware_answers_requests_in_place_of_the_routes(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    kinds = [m.cls for m in app.user_middleware]
    assert sorted(getattr(k, "__name__", "") for k in kinds) == sorted(
        k.__name__
        for k in (
            MetricsMiddleware,
            ApiKeyMiddleware,
            BodyGuardMiddleware,
            ConcurrencyLimitMiddleware,
        )
    )
