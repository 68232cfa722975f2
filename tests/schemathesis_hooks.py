"""Schemathesis hooks for the contract run: every file the API takes is an image.

The document declares `image`/`images` parts as binary strings sent as JPEG, PNG, WebP, BMP or
GIF; a JSON schema cannot say "decodable", so generated files would otherwise be random bytes
that the server rightly refuses (400), and every positive case would look rejected. This
registers a strategy for the `binary` format that draws small real images in those formats.
Negative cases still send broken files: schemathesis mutates other fields, and the decoder's
refusals (400/415/422) are covered by tests/api/test_api.py.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import jsonschema
import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.transport.serialization import Binary

FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")


def small_image(fmt: str, size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


side = st.integers(min_value=8, max_value=48)
channel = st.integers(min_value=0, max_value=255)
images = st.builds(
    small_image,
    st.sampled_from(FORMATS),
    st.tuples(side, side),
    st.tuples(channel, channel, channel),
)
schemathesis.openapi.format("binary", images)


def _on_the_wire(value: Any, schema: dict[str, Any]) -> Any:
    """What the server reads for a form field: text (parsed per the declared type); files as
    an opaque string; a JSON-encoded part as its JSON value."""
    if isinstance(value, list):
        return [_on_the_wire(item, schema.get("items", {})) for item in value]
    if schema.get("type") == "array" and not isinstance(value, dict):
        # A repeatable field (`catalogues`) sent once is a one-item list to the server.
        return [_on_the_wire(value, schema.get("items", {}))]
    if isinstance(value, Binary | bytes):
        return ""
    if isinstance(value, dict) and schema.get("type") == "object":
        return value
    text = str(value)  # requests stringifies every non-bytes form value
    kind = schema.get("type")
    with contextlib.suppress(ValueError):
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "object":
            return json.loads(text)
    return text


def _box_outside_the_schema(failure: Any, response: Any) -> bool:
    """`boxes` is JSON text (a string whose content the document's `contentSchema` describes,
    which schemathesis does not generate from), and must lie inside the photo with x0 < x1 and
    y0 < y1: relations to the uploaded image and between items, which a JSON schema cannot
    state; and `/shelf` without boxes needs a detector. Such a 422 is no contract breach
    (tests/api/test_catalogues.py and tests/api/test_shelf.py check those refusals)."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
        return False
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        return str(json.loads(response.content)["detail"]).startswith("boxes")
    return False


# What app/strict_json.py refuses in a JSON value that a JSON Schema cannot state (the document
# words the rule in the field's description); tests/api/test_hostile_inputs.py checks them.
STRICT_JSON = (
    "holds a NUL character",
    "holds a lone surrogate",
    "does not fit a 64-bit float",
    "does not fit 64 bits",
    "appears twice in one object",
    "nested deeper than",
)


def _strict_json_outside_the_schema(failure: Any, response: Any) -> bool:
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
        return False
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        detail = str(json.loads(response.content)["detail"])
        return any(reason in detail for reason in STRICT_JSON)
    return False


def _check_digit_outside_the_schema(failure: Any, response: Any) -> bool:
    """A barcode's shape is in the document (8, 12, 13 or 14 digits), its check digit cannot
    be: a 422 naming a wrong check digit is no contract breach (tests/api/test_barcodes_api.py
    checks it)."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
        return False
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        detail = str(json.loads(response.content)["detail"])
        return detail.startswith("barcode") and "check digit of" in detail
    return False


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Drop "schema-violating request accepted" when the violation does not survive multipart
    encoding: every form field travels as text, so a sku mutated into the number 5e-08 arrives
    as the valid sku "5e-08". (Schemathesis makes the same allowance for path and query
    parameters, not yet for form fields.) Each drop is counted in the run's summary."""
    if any(
        outside(failure, response)
        for outside in (
            _box_outside_the_schema,
            _check_digit_outside_the_schema,
            _strict_json_outside_the_schema,
        )
    ):
        return False
    if not isinstance(failure, AcceptedNegativeData) or case.media_type != "multipart/form-data":
        return True
    negative = [loc for loc, c in case.meta.components.items() if c.mode.is_negative]
    if negative != [ParameterLocation.BODY] or not isinstance(case.body, dict):
        return True
    content = case.operation.definition.raw["requestBody"]["content"]["multipart/form-data"]
    root = case.operation.schema.raw_schema
    schema = root["components"]["schemas"][content["schema"]["$ref"].rsplit("/", 1)[1]]
    properties = schema.get("properties", {})
    wire = {k: _on_the_wire(v, properties.get(k, {})) for k, v in case.body.items()}
    return not jsonschema.Draft202012Validator(schema).is_valid(wire)
