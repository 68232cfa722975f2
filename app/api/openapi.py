"""The OpenAPI document as the real contract.

FastAPI's generated document knows the routes and bodies; this adds what the server really does
and FastAPI cannot see: the one error model (`{"detail": "<string>"}`, never FastAPI's 422 array),
the limits checked in code (sku pattern, name length, `top_k` range, images per request), the
content types of uploads, the API-key scheme when keys are configured, and links between
operations (for clients and for stateful fuzzing). Limits come from the settings of this process,
so the document served is the one this deployment enforces.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.middleware import ApiKeyMiddleware
from app.api.schemas import ERROR_DESCRIPTIONS
from app.settings import Settings

# Formats the decoder takes (app/encoder/preprocess.py); others are refused with 415.
IMAGE_MEDIA_TYPES = "image/jpeg, image/png, image/webp, image/bmp, image/gif"
SKU_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "pattern": "^[A-Za-z0-9._-]{1,64}$",
}
# The server strips Python whitespace and wants 1-255 characters left, without NUL: so at least
# one character outside this explicit set (spelled out: `\s` differs between regex dialects).
_WHITESPACE = (
    "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
NAME_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": f"^[^\\x00]*[^\\x00{_WHITESPACE}][^\\x00]*$",
    "description": "1-255 characters once leading and trailing whitespace is stripped; no NUL",
}
METADATA_SCHEMA = {
    "type": "object",
    "description": "a JSON object, sent as the text of the `metadata` form field",
}
MIN_SCORE_SCHEMA = {
    "type": "number",
    "minimum": -1,
    "maximum": 1,
    "description": "`unknown` is true when the best score is under this "
    "(default: RETAILKLIP_UNKNOWN_THRESHOLD)",
}
CATALOGUE_SCHEMA = {**SKU_SCHEMA, "description": "a catalogue name (the sku's alphabet)"}
_SCALAR = [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]
FILTER_SCHEMA = {
    "type": "object",
    "maxProperties": 16,
    "additionalProperties": {
        "anyOf": [
            *_SCALAR,
            {"type": "array", "items": {"anyOf": _SCALAR}, "minItems": 1, "maxItems": 100},
        ]
    },
    "description": "exact matches on product metadata, as JSON text: a list value means any "
    "of them, several keys must all match; a key no product has is a 404",
}
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


def contract_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _use_error_model(doc)
        _declare_limits(doc, settings)
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


def _declare_limits(doc: dict[str, Any], settings: Settings) -> None:
    top_k = {
        "type": "integer",
        "minimum": 1,
        "maximum": settings.max_top_k,
        "default": settings.default_top_k,
        "description": "distinct SKUs to return, as a form field or a query parameter",
    }
    fields: dict[str, dict[str, Any]] = {
        "sku": SKU_SCHEMA,
        "name": NAME_SCHEMA,
        "metadata": METADATA_SCHEMA,
        "top_k": top_k,
        "min_score": MIN_SCORE_SCHEMA,
        "image": {"type": "string", "format": "binary"},
        "images": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "minItems": 1,
            "maxItems": settings.max_images_per_request,
        },
        **_scope_fields(settings),
    }
    encodings = {
        "image": {"contentType": IMAGE_MEDIA_TYPES},
        "images": {"contentType": IMAGE_MEDIA_TYPES},
        "metadata": {"contentType": "application/json"},
        "filter": {"contentType": "application/json"},
        "boxes": {"contentType": "application/json"},
    }
    schemas = doc["components"]["schemas"]
    for _, op in _operations(doc):
        for parameter in op.get("parameters", []):
            if parameter["name"] == "filter":  # JSON text in a query parameter
                del parameter["schema"]
                parameter["content"] = {"application/json": {"schema": FILTER_SCHEMA}}
            elif parameter["name"] in fields:
                parameter["schema"] = dict(fields[parameter["name"]])
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if op["operationId"] == "setCatalogues" and body is not None:
            body["schema"] = fields["catalogues"]
        form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data")
        if form is None:
            continue
        body = schemas[form["schema"]["$ref"].rsplit("/", 1)[1]]
        for name, schema in body["properties"].items():
            if name in fields:
                body["properties"][name] = {"title": schema.get("title", name), **fields[name]}
        form["encoding"] = {k: v for k, v in encodings.items() if k in body["properties"]}


def _scope_fields(settings: Settings) -> dict[str, dict[str, Any]]:
    """Catalogues, metadata filters and boxes."""
    return {
        "catalogue": CATALOGUE_SCHEMA,
        "catalogues": {
            "type": "array",
            "items": CATALOGUE_SCHEMA,
            "maxItems": settings.max_catalogues_per_product,
            "description": "catalogue names (a repeated name is kept once)",
        },
        "filter": FILTER_SCHEMA,
        "boxes": {
            "type": "array",
            "minItems": 1,
            "maxItems": settings.max_boxes,
            "items": {
                "type": "array",
                "items": {"type": "number", "minimum": 0},
                "minItems": 4,
                "maxItems": 4,
            },
            "description": "JSON text: [[x0, y0, x1, y1], ...] in the photo's pixels (EXIF "
            "orientation applied), x0 < x1 <= width, y0 < y1 <= height; the answer then has "
            "one entry per box in `regions`",
        },
    }


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
