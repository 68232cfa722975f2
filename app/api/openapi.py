"""The OpenAPI document as the real contract.

FastAPI generates the routes, the bodies and each field's schema, from the fields' types
(app/api/types.py): limits that are settings come from the settings of this process, so the
document served is the one this deployment enforces. This adds what FastAPI cannot express: the
one error model (`{"detail": "<string>"}`, never FastAPI's 422 array), where the media types the
types name go (multipart `encoding`, a JSON-text query parameter's `content`), the API-key scheme
when keys are configured, and links between operations (for clients and for stateful fuzzing).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from fastapi import FastAPI, routing
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.api.deps import route_role
from app.api.middleware import ApiKeyMiddleware
from app.api.schemas import ERROR_DESCRIPTIONS
from app.api.types import (
    MEDIA_TYPE,
    SETTINGS_DEFAULT,
    documenting,
)
from app.settings import Role, Settings

ERROR_REF = {"$ref": "#/components/schemas/ErrorDetail"}
API_KEY_SCHEME = "ApiKeyHeader"

# Stateful fuzzing and generated clients follow these from one answer to the next call.
LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("createProduct", "201"): {
        "GetProduct": {"operationId": "getProduct", "parameters": {"sku": "$response.body#/sku"}},
        "AddImages": {"operationId": "addImages", "parameters": {"sku": "$response.body#/sku"}},
        "DeleteProduct": {
            "operationId": "deleteProduct",
            "parameters": {"sku": "$response.body#/sku"},
        },
        "DeleteFirstImage": {
            "operationId": "deleteImage",
            "parameters": {"sku": "$response.body#/sku", "image_id": "$response.body#/image_ids/0"},
        },
        "GetFirstImage": {
            "operationId": "getImage",
            "parameters": {"sku": "$response.body#/sku", "image_id": "$response.body#/image_ids/0"},
        },
        "GetSimilar": {"operationId": "getSimilar", "parameters": {"sku": "$response.body#/sku"}},
        "SetCatalogues": {
            "operationId": "setCatalogues",
            "parameters": {"sku": "$response.body#/sku"},
        },
    },
    ("addImages", "201"): {
        "GetProduct": {"operationId": "getProduct", "parameters": {"sku": "$response.body#/sku"}},
        "DeleteFirstImage": {
            "operationId": "deleteImage",
            "parameters": {"sku": "$response.body#/sku", "image_id": "$response.body#/image_ids/0"},
        },
    },
    ("deleteProduct", "204"): {
        "GetProduct": {"operationId": "getProduct", "parameters": {"sku": "$request.path.sku"}},
    },
    ("deleteImage", "204"): {
        "GetProduct": {"operationId": "getProduct", "parameters": {"sku": "$request.path.sku"}},
    },
}


# Fields of routes whose parameters are still plain `str` / `UploadFile` (app/api/classify.py):
# their types' schemas go in by name. An entry goes once its parameter is annotated with the type.
def contract_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    if app.openapi_schema is None:
        with documenting(settings):
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
        _place_keywords(doc)
        _use_error_model(doc)
        _declare_auth(doc, settings, _roles(app))
        for (operation_id, status), links in LINKS.items():
            _find(doc, operation_id)["responses"][status]["links"] = links
        for _, op in _operations(doc):
            op["responses"] = dict(sorted(op["responses"].items()))
        app.openapi_schema = doc
    return app.openapi_schema


def _operations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, op) for path, item in doc["paths"].items() for op in item.values()]


def _find(doc: dict[str, Any], operation_id: str) -> dict[str, Any]:
    return next(op for _, op in _operations(doc) if op["operationId"] == operation_id)


def _form_fields(doc: dict[str, Any], op: dict[str, Any]) -> dict[str, Any] | None:
    form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data")
    if form is None:
        return None
    body = doc["components"]["schemas"][form["schema"]["$ref"].rsplit("/", 1)[1]]
    fields: dict[str, Any] = body["properties"]
    return fields


def _place_keywords(doc: dict[str, Any]) -> None:
    """What types set for elsewhere (app/api/types.py): a default the server applies, and a
    media type: a multipart part's goes in the form's `encoding`; a query parameter with one is
    JSON text, declared as its `content`."""
    for _, op in _operations(doc):
        fields = _form_fields(doc, op) or {}
        for schema in [*(p["schema"] for p in op.get("parameters", [])), *fields.values()]:
            if SETTINGS_DEFAULT in schema:
                schema["default"] = schema.pop(SETTINGS_DEFAULT)
        for parameter in op.get("parameters", []):
            media = parameter.get("schema", {}).pop(MEDIA_TYPE, None)
            if media is not None:
                parameter["content"] = {media: {"schema": parameter.pop("schema")}}
        encoding = {
            name: {"contentType": schema.pop(MEDIA_TYPE)}
            for name, schema in fields.items()
            if MEDIA_TYPE in schema
        }
        if encoding:
            op["requestBody"]["content"]["multipart/form-data"]["encoding"] = encoding


def _use_error_model(doc: dict[str, Any]) -> None:
    """FastAPI adds its 422 array wherever a route has parameters; every 422 the routes can
    really answer is declared on the route with the error model, so the rest are dropped."""
    for _, op in _operations(doc):
        responses = op["responses"]
        if "HTTPValidationError" in str(responses.get("422", "")):
            del responses["422"]
    schemas = doc["components"]["schemas"]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)


def _roles(app: FastAPI) -> dict[str, Role]:
    """operationId -> the role its route requires (app/api/deps.py `requires`)."""
    return {
        route.operation_id: route_role(route.dependencies)
        for route in api_routes(app)
        if route.operation_id
    }


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every API route of the app, through included routers, as the OpenAPI document sees them."""
    originals = (context.original_route for context in routing.iter_route_contexts(app.routes))
    return [route for route in originals if isinstance(route, APIRoute)]


def _declare_auth(doc: dict[str, Any], settings: Settings, roles: dict[str, Role]) -> None:
    """Every keyed operation names the role it needs (`x-required-role`, and its description
    says it); with keys configured, the scheme, and 401 / 403 where they can happen."""
    for path, op in _operations(doc):
        if path in ApiKeyMiddleware.OPEN_PATHS:
            continue
        role = roles.get(op.get("operationId", ""), "classify")
        op["x-required-role"] = role
        note = f"Needs an API key of role `{role}` or higher (when keys are configured)."
        op["description"] = f"{op['description']}\n\n{note}" if op.get("description") else note
    if not settings.auth:
        return
    doc["components"]["securitySchemes"] = {
        API_KEY_SCHEME: {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    }
    for path, op in _operations(doc):
        if path in ApiKeyMiddleware.OPEN_PATHS:
            continue
        op["security"] = [{API_KEY_SCHEME: []}]
        refusals = (401, 403) if op["x-required-role"] != "classify" else (401,)
        for status in refusals:
            op["responses"][str(status)] = {
                "description": ERROR_DESCRIPTIONS[status],
                "content": {"application/json": {"schema": ERROR_REF}},
            }


@cache
def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")


def allowed_methods(doc: dict[str, Any], path: str) -> str:
    """Every method the document gives for `path` (HEAD with GET), for a 405's `Allow`."""
    methods: set[str] = set()
    for template, item in doc["paths"].items():
        if _template(template).match(path):
            methods |= {method.upper() for method in item}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))
