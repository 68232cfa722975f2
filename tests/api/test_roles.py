"""Keys with roles through a real uvicorn process: every route of the route table answers 401
without a key, 403 to a key whose role is too low (and does nothing), and lets a high enough
role through; the OpenAPI document names each route's role."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app.api.deps import route_role
from app.api.openapi import api_routes
from app.main import create_app
from app.settings import ROLES, Settings
from tests.image_factory import jpeg
from tests.support.paths import GROCERY
from tests.support.servers import LiveServer, running_server

KEYS = {"classify": "lane-key", "edit": "clerk-key", "admin": "boss-key"}
BANANA = GROCERY / "iconic-images-and-descriptions/Fruit/Banana/Banana_Iconic.jpg"
PROBES = {"/healthz", "/readyz", "/metrics"}


def route_table() -> list[tuple[str, str, str]]:
    """(method, path, role) of every API route, from the app's own routes."""
    app = create_app(Settings(model="efficientnet-lite0"))
    return sorted(
        (method, route.path, route_role(route.dependencies))
        for route in api_routes(app)
        if route.path not in PROBES and route.include_in_schema  # the console: open
        for method in route.methods - {"HEAD"}
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    entries = "lane-key:classify, clerk-key:edit, boss-key"  # a bare key is an admin key
    with running_server(tmp_path_factory.mktemp("roles"), api_keys=entries) as live:
        yield live


def test_every_route_answers_by_role(server: LiveServer) -> None:
    table = route_table()
    assert {role for _, _, role in table} == set(ROLES)  # the table is not all one role
    document = httpx.get(f"{server.url}/openapi.json").json()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for method, path, role in table:
            assert document["paths"][path][method.lower()]["x-required-role"] == role
            url = re.sub(r"\{[^}]+\}", lambda m: "1" if "id" in m.group(0) else "probe", path)
            assert client.request(method, url).status_code == 401, (method, path)
            for granted, key in KEYS.items():
                answer = client.request(method, url, headers={"X-API-Key": key})
                if ROLES.index(granted) < ROLES.index(role):
                    assert answer.status_code == 403, (method, path, granted)
                    assert answer.json() == {
                        "detail": f"this API key's role is {granted}; {method} {url} needs {role}"
                    }
                else:
                    assert answer.status_code not in (401, 403), (method, path, granted)


def test_a_refused_write_changes_nothing(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        boss, clerk, lane = ({"X-API-Key": KEYS[r]} for r in ("admin", "edit", "classify"))
        created = client.post(
            "/products",
            data={"sku": "kept", "name": "Kept"},
            files=[("images", jpeg(BANANA))],
            headers=clerk,
        )
        assert created.status_code == 201
        refused = client.post(
            "/products",
            data={"sku": "lane-made", "name": "No"},
            files=[("images", jpeg(BANANA))],
            headers=lane,
        )
        assert refused.status_code == 403
        assert client.get("/products/lane-made", headers=lane).status_code == 404
        assert client.delete("/products/kept", headers=clerk).status_code == 403
        assert client.get("/products/kept", headers=lane).json()["image_count"] == 1
        answer = client.post("/classify", files={"image": jpeg(BANANA)}, headers=lane)
        assert answer.status_code == 200 and answer.json()["matches"][0]["sku"] == "kept"
        assert client.delete("/products/kept", headers=boss).status_code == 204


def test_a_role_typo_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="the role must be one of"):
        Settings(api_keys="lane-key:clasify")
    assert Settings(api_keys="a:classify, b").auth == {"a": "classify", "b": "admin"}
