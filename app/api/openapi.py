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

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.middleware import ApiKeyMiddleware
from app.api.schemas import ERROR_DESCRIPTIONS
from app.api.types import (
    MEDIA_TYPE,
    SETTINGS_DEFAULT,
    documenting,
)
from app.settings import Settings

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
        _declare_auth(doc, settings)
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


def _declare_auth(doc: dict[str, Any], settings: Settings) -> None:
    if not settings.api_key_list:
        return
    doc["components"]["securitySchemes"] = {
        API_KEY_SCHEME: {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    }
    for path, op in _operations(doc):
        if path in ApiKeyMiddleware.OPEN_PATHS:
            continue
        op["security"] = [{API_KEY_SCHEME: []}]
        op["responses"]["401"] = {
            "description": ERROR_DESCRIPTIONS[401],
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
