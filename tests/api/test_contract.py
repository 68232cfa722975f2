"""The OpenAPI document is the contract: what it declares, the README's table, and a bounded
schemathesis run (all checks, stateful phase included) against a live server on PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from pydantic import TypeAdapter, ValidationError

from app.api import types
from app.main import create_app
from app.settings import Settings
from tests.support.databases import backend_database
from tests.support.paths import REPO
from tests.support.servers import LiveServer, running_server

KEY = "contract-key"
ERROR_REF = "#/components/schemas/ErrorDetail"
# What each route really answers (401 and 403 only where keys are configured).
STATUSES = {
    ("POST", "/products"): {201, 400, 401, 403, 409, 413, 415, 422, 503, 507},
    ("GET", "/products"): {200, 401, 422, 503},
    ("POST", "/products/{sku}/images"): {201, 400, 401, 403, 404, 409, 413, 415, 422, 503, 507},
    ("GET", "/products/{sku}"): {200, 401, 404, 503},
    ("POST", "/products/{sku}/barcodes"): {200, 401, 403, 404, 409, 422, 503},
    ("DELETE", "/products/{sku}/barcodes/{barcode}"): {204, 401, 403, 404, 422, 503},
    ("DELETE", "/products/{sku}"): {204, 401, 403, 404, 503},
    ("DELETE", "/products/{sku}/images/{image_id}"): {204, 401, 403, 404, 422, 503},
    ("POST", "/classify"): {200, 400, 401, 404, 413, 415, 422, 503},
    ("POST", "/classify/batch"): {200, 400, 401, 404, 413, 415, 422, 503},
    ("POST", "/shelf"): {200, 400, 401, 404, 413, 415, 422, 503},
    ("GET", "/catalogues"): {200, 401, 503},
    ("PUT", "/products/{sku}/catalogues"): {200, 400, 401, 403, 404, 422, 503},
    ("GET", "/products/{sku}/images/{image_id}"): {200, 304, 401, 404, 422, 503},
    ("GET", "/products/{sku}/similar"): {200, 401, 404, 422, 503},
    ("GET", "/review"): {200, 401, 403, 422, 503},
    ("GET", "/review/needs"): {200, 401, 403, 422, 503},
    ("GET", "/review/{item_id}/photo"): {200, 401, 403, 404, 422, 503},
    ("POST", "/review/{item_id}/confirm"): {201, 400, 401, 403, 404, 409, 413, 422, 503, 507},
    ("POST", "/review/{item_id}/reject"): {204, 401, 403, 404, 422, 503},
    ("DELETE", "/review"): {204, 401, 403, 503},
    ("GET", "/auth/role"): {200, 401},
    ("GET", "/healthz"): {200},
    ("GET", "/readyz"): {200, 503},
    ("GET", "/metrics"): {200},
}


def document(**settings: Any) -> dict[str, Any]:
    return create_app(Settings(model="efficientnet-lite0", **settings)).openapi()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def body_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    ref = doc["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    return doc["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]


def test_every_route_declares_its_real_statuses_with_the_one_error_model() -> None:
    doc = document(api_keys=KEY)
    declared = {(m, p): {int(s) for s in op["responses"]} for m, p, op in operations(doc)}
    assert declared == STATUSES
    for _, _, op in operations(doc):
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (op["operationId"], status)
    assert "HTTPValidationError" not in str(doc)
    assert doc["components"]["schemas"]["ErrorDetail"]["required"] == ["detail"]
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


def test_constraints_the_server_enforces_are_declared() -> None:
    doc = document(
        max_top_k=40,
        default_top_k=3,
        max_images_per_request=7,
        max_catalogues_per_product=9,
        max_boxes=5,
        unknown_threshold=0.25,
    )
    create = body_schema(doc, "/products")["properties"]
    assert create["sku"]["pattern"] == "^[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*$"
    assert (create["sku"]["minLength"], create["sku"]["maxLength"]) == (1, 64)
    assert (create["name"]["minLength"], create["name"]["maxLength"]) == (1, 255)
    assert create["metadata"]["type"] == "object"
    assert (create["images"]["minItems"], create["images"]["maxItems"]) == (1, 7)
    assert body_schema(doc, "/classify/batch")["properties"]["images"]["maxItems"] == 7
    classify = body_schema(doc, "/classify")["properties"]
    assert (classify["top_k"]["minimum"], classify["top_k"]["maximum"]) == (1, 40)
    assert (classify["min_score"]["minimum"], classify["min_score"]["maximum"]) == (-1, 1)
    assert (classify["top_k"]["default"], classify["min_score"]["default"]) == (3, 0.25)
    query = {
        p["name"]: p.get("schema") or p["content"]["application/json"]["schema"]
        for p in doc["paths"]["/classify"]["post"]["parameters"]
    }
    assert (query["top_k"]["maximum"], query["top_k"]["default"]) == (40, 3)
    assert query["filter"]["type"] == "object" and query["catalogue"]["pattern"]
    boxes = classify["boxes"]["contentSchema"]  # JSON text: a string whose content is the array
    assert classify["boxes"]["type"] == "string"
    assert (boxes["minItems"], boxes["maxItems"]) == (1, 5)
    assert create["catalogues"]["items"]["pattern"] == create["sku"]["pattern"]
    assert create["catalogues"]["maxItems"] == 9
    put = doc["paths"]["/products/{sku}/catalogues"]["put"]["requestBody"]["content"]
    assert put["application/json"]["schema"]["maxItems"] == 9
    assert put["application/json"]["schema"]["items"]["pattern"] == create["sku"]["pattern"]
    path_sku = doc["paths"]["/products/{sku}"]["get"]["parameters"][0]["schema"]
    assert path_sku["pattern"] == create["sku"]["pattern"]
    listing = {p["name"]: p["schema"] for p in doc["paths"]["/products"]["get"]["parameters"]}
    assert (listing["limit"]["minimum"], listing["limit"]["maximum"]) == (1, 500)
    encoding = doc["paths"]["/products"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "image/jpeg" in encoding["encoding"]["images"]["contentType"]
    assert encoding["encoding"]["metadata"] == {"contentType": "application/json"}
    # Limits are those of the settings the document is made for, never another app's.
    assert body_schema(document(), "/classify")["properties"]["top_k"]["maximum"] == 100
    # What the types set for elsewhere (media types, defaults) is moved, not left behind.
    assert "x-media-type" not in str(doc) and "x-settings-default" not in str(doc)


def test_the_document_and_the_server_check_the_same_rules() -> None:
    """Both come from one declaration (app/api/types.py): a value the document's schema allows
    is one the type takes, and the other way round."""
    doc = document()
    create = body_schema(doc, "/products")["properties"]
    classify = body_schema(doc, "/classify")["properties"]
    image = {
        p["name"]: p["schema"]
        for p in doc["paths"]["/products/{sku}/images/{image_id}"]["get"]["parameters"]
    }
    cases: list[tuple[Any, dict[str, Any], list[Any]]] = [
        (
            types.Sku,
            create["sku"],
            ["a", "A-1_b.c", "x" * 64, "", "x" * 65, "a b", "a/b", "é"],
        ),
        (types.CatalogueName, classify["catalogue"], ["store-1", "", "no/slash", "x" * 65]),
        (
            types.ProductName,
            create["name"],
            ["Banana", " x ", "", "  ", "a\x00b", "\u3000", "x" * 256],
        ),
        (types.MinScore, classify["min_score"], [-1, 0.5, 1, -1.5, 2]),
        (types.ImageId, image["image_id"], [1, 2**63 - 1, 0, 2**63]),
        (types.ThumbSize, image["size"], [16, 1024, 15, 1025]),
    ]
    for annotation, schema, values in cases:
        adapter, validator = TypeAdapter(annotation), jsonschema.Draft202012Validator(schema)
        for value in values:
            try:
                adapter.validate_python(value)
                taken = True
            except ValidationError:
                taken = False
            assert validator.is_valid(value) == taken, (schema.get("title"), value)
    # `$` before a final newline: ECMA-262 (JSON Schema's dialect) and the server say no,
    # Python's `re` (the jsonschema package) says yes.
    with pytest.raises(ValidationError):
        TypeAdapter(types.Sku).validate_python("ok\n")


def test_name_pattern_matches_what_the_server_keeps() -> None:
    """The server strips (Python) whitespace and wants 1-255 characters without NUL."""
    pattern = re.compile(body_schema(document(), "/products")["properties"]["name"]["pattern"])
    spaces = [chr(c) for c in range(0x3001) if chr(c).isspace()]
    names = ["Banana", " x ", "\ufeff", "a\tb", "", "a\x00b", "\x00", *spaces, "".join(spaces)]
    for name in names:
        kept = name.strip()
        assert bool(pattern.search(name)) == (bool(kept) and "\x00" not in kept), repr(name)


def test_api_key_scheme_only_when_keys_are_configured() -> None:
    open_doc, keyed = document(), document(api_keys=KEY)
    assert "securitySchemes" not in open_doc["components"]
    assert all("401" not in op["responses"] for _, _, op in operations(open_doc))
    assert all("403" not in op["responses"] for _, _, op in operations(open_doc))
    scheme = keyed["components"]["securitySchemes"]["ApiKeyHeader"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    secured = {(m, p) for m, p, op in operations(keyed) if "security" in op}
    assert secured == {k for k in STATUSES if k[1] not in ("/healthz", "/readyz", "/metrics")}


def readme_statuses() -> dict[tuple[str, str], set[int]]:
    text = (REPO / "README.md").read_text()
    section = text.split("### Statuses per route", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(\w+) (\S+)` \| ([\d, ]*\d)[^|]* \|$", section, flags=re.MULTILINE)
    return {(m, p): {int(s) for s in codes.split(",")} for m, p, codes in rows}


def test_committed_document_is_the_one_served() -> None:
    # docs/openapi.json is the contract clients are written against; regenerate it with
    # `retailklip openapi --with-api-keys > docs/openapi.json` after changing a route.
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "openapi", "--with-api-keys"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("RETAILKLIP_")},
    )
    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert json.loads(out.stdout) == committed, "docs/openapi.json is stale: regenerate it"


def test_readme_status_table_is_the_documents() -> None:
    doc = document(api_keys=KEY)
    declared = {(m, p): {int(s) for s in op["responses"]} for m, p, op in operations(doc)}
    assert readme_statuses() == declared


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("contract")
    # Four images per request keep the near-boundary arrays schemathesis sends cheap to embed.
    with (
        backend_database("postgresql") as url,
        running_server(root, database_url=url, api_keys=KEY, max_images_per_request=4) as live,
    ):
        yield live


def test_405_names_every_method_of_the_path(server: LiveServer) -> None:
    headers = {"X-API-Key": KEY}
    for method, path, allow in [
        ("PUT", "/products/abc", "DELETE, GET, HEAD"),
        ("PATCH", "/products", "GET, HEAD, POST"),
        ("GET", "/classify", "POST"),
    ]:
        response = httpx.request(method, server.url + path, headers=headers, timeout=30)
        assert response.status_code == 405
        assert response.headers["allow"] == allow
        assert response.json() == {"detail": "Method Not Allowed"}


def test_metrics_are_prometheus_text(server: LiveServer) -> None:
    response = httpx.get(server.url + "/metrics", timeout=30)
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE retailklip_http_requests_total counter" in response.text


@pytest.mark.timeout(1800)  # about 30 s on an idle 2-core machine; far more when it is busy
def test_schemathesis_finds_nothing(server: LiveServer, tmp_path: Path) -> None:
    """All checks, coverage + fuzzing + stateful phases, a fixed seed (set
    RETAILKLIP_SCHEMATHESIS_SEED to explore others) and a bounded number of cases."""
    seed = os.environ.get("RETAILKLIP_SCHEMATHESIS_SEED", "4")
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json"),
        *("--checks", "all", "--phases", "examples,coverage,fuzzing,stateful"),
        # One worker: with two, Hypothesis describing a strategy iterates sys.modules while
        # the other thread imports (RuntimeError: dictionary changed size during iteration).
        *("--max-examples", "30", "--seed", seed, "--workers", "1"),
        *("--header", f"X-API-Key: {KEY}", "--request-timeout", "120"),
        *("--report", "junit", "--report-dir", str(tmp_path)),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500
    )
    summary = run.stdout[-6000:]
    assert run.returncode == 0, summary
    cases = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert cases and int(cases.group(1)) >= 300 and cases.group(1) == cases.group(2), summary
    assert re.search(r"Stateful.*?(\d+) passed", summary, flags=re.DOTALL), summary
