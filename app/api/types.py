"""The HTTP contract's field rules, declared once.

Each type here is the annotation of a `Form()`, `Path()`, `Query()` or `Body()` parameter:
pydantic checks it before the route runs (a 422 naming the field and the rule, through the
handler in app/main.py) and FastAPI generates the field's schema in the OpenAPI document from it.
The messages are the contract's own wording (`_worded`): what the value must be, never a regex.

Some rules cannot be a pydantic constraint; they are still declared here, and checked elsewhere:

- Limits set by the process's Settings (`max_top_k`, `max_images_per_request`,
  `max_catalogues_per_product`, `max_boxes`, the defaults): these types exist from import, before
  any Settings. `FromSettings` names the setting; the document generated inside
  `documenting(settings)` gets its value, and the route, which has the settings, checks it.
- `top_k` is one range, 1 to `max_top_k`, with one message naming both ends: the route checks
  the whole range (`TOP_K_MIN` here), the type only declares it.
- JSON text (`metadata`, `filter`, `boxes`): the field's text is a JSON value, parsed by the
  route (app/api/json_fields.py, app/recognition/scopes.py), whose errors name
  what is wrong inside. The type declares the schema of the decoded value and its media type.
- A sku that is only looked up (`SkuLookup`) is declared with the pattern but not checked: no
  product has a malformed sku, so the lookup answers 404, as those routes' contract says.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any, TypeVar

from fastapi import UploadFile
from pydantic import (
    BeforeValidator,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from app.recognition.scopes import MAX_FILTER_KEYS, MAX_FILTER_VALUES
from app.settings import Settings

T = TypeVar("T")

# JSON-schema keywords a type sets that belong elsewhere; app/api/openapi.py moves them there.
# The media type of a multipart part or of a query parameter's text: to `encoding` / `content`.
MEDIA_TYPE = "x-media-type"
# To `default`: an omittable field's own default (None, "not sent") replaces the `default` of
# its type's schema, so `FromSettings` writes the default the server applies here.
SETTINGS_DEFAULT = "x-settings-default"
# Formats the decoder takes (app/encoder/preprocess.py); others are refused with 415.
IMAGE_MEDIA_TYPES = "image/jpeg, image/png, image/webp, image/bmp, image/gif"
MAX_ID = 2**63 - 1  # SQL BIGINT
TOP_K_MIN = 1

_documented: ContextVar[Settings | None] = ContextVar("documented_settings", default=None)


@contextmanager
def documenting(settings: Settings) -> Iterator[None]:
    """JSON schemas generated inside take their `FromSettings` values from `settings`."""
    token = _documented.set(settings)
    try:
        yield
    finally:
        _documented.reset(token)


class FromSettings:
    """JSON-schema keywords whose values are settings: `FromSettings(maxItems="max_boxes")`;
    a keyword inside a sub-schema is named by its path (`contentSchema.maxItems`)."""

    def __init__(self, **keywords: str) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        settings = _documented.get()
        if settings is not None:
            for keyword, setting in self.keywords.items():
                target = handler.resolve_ref_schema(schema)
                *path, last = keyword.split(".")
                for part in path:
                    target = target[part]
                key = SETTINGS_DEFAULT if last == "default" else last
                target[key] = getattr(settings, setting)
        return schema


class _Schema:
    """JSON-schema keywords pydantic has no constraint for (descriptions, media types)."""

    def __init__(self, **keywords: Any) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        handler.resolve_ref_schema(schema).update(self.keywords)
        return schema


class _NotNull:
    """An optional form field or query parameter is left out, never sent as null."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        sent = [s for s in schema.get("anyOf", ()) if s != {"type": "null"}]
        if len(sent) != 1:
            return schema
        return {**sent[0], **{k: v for k, v in schema.items() if k != "anyOf"}}


# `Annotated[Omittable[TopK], Query()] = None`: None when not sent.
Omittable = Annotated[T | None, _NotNull()]

# Errors that break a type's rule (others, a string that is not a number say, keep pydantic's).
_RULE_ERRORS = frozenset(
    {
        "string_too_short",
        "string_too_long",
        "string_pattern_mismatch",
        "greater_than_equal",
        "less_than_equal",
    }
)


def _worded(message: str) -> WrapValidator:
    """The rule's own message instead of pydantic's ("String should match pattern ...")."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            if all(e["type"] in _RULE_ERRORS for e in exc.errors()):
                raise PydanticCustomError("contract_rule", message) from None
            raise

    return WrapValidator(check)


_JSON_TEXT = _Schema(**{MEDIA_TYPE: "application/json"})


# The sku's alphabet, safe in URLs, file paths and CSV cells; catalogue names use it too. Not
# only dots: browsers and HTTP clients rewrite `.` and `..` path segments, so such a product
# could never be read or deleted by its URL.
SKU_PATTERN = r"^[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*$"
ALPHABET_RULE = "1-64 characters of A-Za-z0-9._-, not only dots"
_SKU_ALPHABET = StringConstraints(min_length=1, max_length=64, pattern=SKU_PATTERN)

Sku = Annotated[str, _SKU_ALPHABET, _worded(f"must be {ALPHABET_RULE}")]
SkuLookup = Annotated[str, WithJsonSchema(TypeAdapter(Sku).json_schema())]

CATALOGUE_ERROR = f"catalogue must be {ALPHABET_RULE}"
CatalogueName = Annotated[
    str,
    _SKU_ALPHABET,
    _worded(f"must be {ALPHABET_RULE}"),
    _Schema(description="a catalogue name (the sku's alphabet)"),
]


def _one_catalogue_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A bad name in a list is one error for the list (the body of PUT .../catalogues is the
    list itself: an item's error would be located by its index alone)."""
    try:
        return handler(value)
    except ValidationError as exc:
        if all(e["type"] == "contract_rule" for e in exc.errors()):
            raise PydanticCustomError("contract_rule", CATALOGUE_ERROR) from None
        raise


# At most `max_catalogues_per_product` as sent: app/api/scope.py `valid_catalogues` checks it.
CatalogueNames = Annotated[
    list[CatalogueName],
    WrapValidator(_one_catalogue_error),
    FromSettings(maxItems="max_catalogues_per_product"),
    _Schema(description="catalogue names (a repeated name is kept once)"),
]


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


# The server strips (Python's) whitespace and keeps 1-255 characters, without NUL. The pattern
# says the same of the text sent: at least one character outside this explicit set (spelled out,
# as `\s` differs between regex dialects), no NUL. The lengths count what is kept.
_WHITESPACE = (
    "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
NAME_PATTERN = f"^[^\\x00]*[^\\x00{_WHITESPACE}][^\\x00]*$"
NAME_RULE = "1-255 characters once leading and trailing whitespace is stripped; no NUL"
ProductName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255, pattern=NAME_PATTERN),
    BeforeValidator(_strip),
    _worded(f"must be {NAME_RULE}"),
    _Schema(description=NAME_RULE),
]

# Parsed by app/api/json_fields.py (a JSON object, held to app/strict_json.py's rule).
MetadataText = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "object",
            "description": "a JSON object, sent as the text of the `metadata` form field; "
            "I-JSON (RFC 7493): finite numbers that fit a 64-bit float, integers that fit 64 "
            "bits, Unicode text without NUL, no key twice in one object, at most 32 levels",
        }
    ),
    _JSON_TEXT,
]

# 1 to `max_top_k` (checked by the route, with the default `default_top_k`).
TopK = Annotated[
    int,
    _Schema(
        minimum=TOP_K_MIN,
        description="distinct SKUs to return, as a form field or a query parameter",
    ),
    FromSettings(maximum="max_top_k", default="default_top_k"),
]
MinScore = Annotated[
    float,
    Field(ge=-1, le=1),
    _worded("must be between -1 and 1"),
    _Schema(
        description="`unknown` is true when the best score is under this "
        "(default: RETAILKLIP_UNKNOWN_THRESHOLD)"
    ),
    FromSettings(default="unknown_threshold"),
]

_SCALAR = [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]
# Parsed by app/recognition/scopes.py `parse_filter`, which checks these limits.
FilterText = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_FILTER_KEYS,
            "additionalProperties": {
                "anyOf": [
                    *_SCALAR,
                    {
                        "type": "array",
                        "items": {"anyOf": _SCALAR},
                        "minItems": 1,
                        "maxItems": MAX_FILTER_VALUES,
                    },
                ]
            },
            "description": "exact matches on product metadata, as JSON text: a list value means "
            "any of them, several keys must all match; a key no product has is a 404",
        }
    ),
    _JSON_TEXT,
]

# Parsed by app/api/json_fields.py `parse_boxes` (at most `max_boxes`; inside the photo:
# app/recognition/regions.py).
BoxesText = Annotated[
    str,
    WithJsonSchema(
        {
            # A string: multipart has no arrays of arrays (a generated client would send each
            # number as a field of its own); the text is JSON, its schema `contentSchema`.
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "array",
                    "items": {"type": "number", "minimum": 0},
                    "minItems": 4,
                    "maxItems": 4,
                },
            },
            "description": "JSON text: [[x0, y0, x1, y1], ...] in the photo's pixels (EXIF "
            "orientation applied), x0 < x1 <= width, y0 < y1 <= height; the answer then has "
            "one entry per box in `regions`",
        }
    ),
    _JSON_TEXT,
    FromSettings(**{"contentSchema.maxItems": "max_boxes"}),
]

# A GTIN-8/12/13/14 (spaces and dashes between digits allowed): the type checks its shape, the
# check digit is checked by app/api/barcode_fields.py, which names the digit it should be.
BARCODE_RULE = "a GTIN: 8, 12, 13 or 14 digits, the last a valid check digit"
# 8, 12, 13 or 14 digits, single spaces or dashes allowed between them.
BARCODE_PATTERN = r"^[0-9](?:[ -]?[0-9]){7}$|^[0-9](?:[ -]?[0-9]){11,13}$"
BarcodeText = Annotated[
    str,
    StringConstraints(min_length=8, max_length=27, pattern=BARCODE_PATTERN),
    _worded("must be 8, 12, 13 or 14 digits (single spaces or dashes between them allowed)"),
    _Schema(description=BARCODE_RULE, examples=["4006381333931"]),
]
BarcodeTexts = Annotated[
    list[BarcodeText],
    Field(max_length=32),
    _Schema(description=f"{BARCODE_RULE}; repeat the field for more (at most 32)"),
]
NewBarcodes = Annotated[
    list[BarcodeText],
    Field(min_length=1, max_length=32),
    _Schema(description=f"{BARCODE_RULE}; repeat the field for more (1 to 32)"),
]

# Parsed by app/api/json_fields.py `parse_planogram` (the limits below).
MAX_PLAN_SHELVES = 50
MAX_PLAN_ENTRIES = 200  # per shelf
MAX_PLAN_FACINGS = 100  # per entry
PlanogramText = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "object",
            "required": ["shelves"],
            "additionalProperties": False,
            "properties": {
                "shelves": {
                    "type": "array",
                    "maxItems": MAX_PLAN_SHELVES,
                    "items": {
                        "type": "array",
                        "maxItems": MAX_PLAN_ENTRIES,
                        "items": {
                            "type": "object",
                            "required": ["sku"],
                            "additionalProperties": False,
                            "properties": {
                                "sku": TypeAdapter(Sku).json_schema(),
                                "facings": {
                                    "type": "integer",
                                    "minimum": 1,
                                    "maximum": MAX_PLAN_FACINGS,
                                    "default": 1,
                                },
                            },
                        },
                    },
                    "description": "the shelves top to bottom, each its products left to right",
                }
            },
            "description": 'JSON text: {"shelves": [[{"sku": "cola-33cl", "facings": 3}, ...], '
            "...]}: the planned shelf, checked against what the photo shows",
        }
    ),
    _JSON_TEXT,
]
# Repeatable, like `catalogues`: the SKUs the shelf must show.
MustHave = Annotated[
    list[Sku],
    Field(max_length=MAX_PLAN_ENTRIES),
    _Schema(description="the SKUs the shelf must show; the answer lists those not found"),
]
# A metadata key: facings are also counted per value of it (`brand`).
GroupBy = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    _Schema(description="a metadata key: facings are also counted per value of it"),
]

_Upload = Annotated[UploadFile, WithJsonSchema({"type": "string", "format": "binary"})]
ImageUpload = Annotated[_Upload, _Schema(**{MEDIA_TYPE: IMAGE_MEDIA_TYPES})]
# At most `max_images_per_request`: app/api/uploads.py `read_all` checks it.
ImageUploads = Annotated[
    list[_Upload],
    Field(min_length=1),
    FromSettings(maxItems="max_images_per_request"),
    _Schema(**{MEDIA_TYPE: IMAGE_MEDIA_TYPES}),
]

ImageId = Annotated[int, Field(ge=1, le=MAX_ID)]
PageLimit = Annotated[int, Field(ge=1, le=500)]
PageOffset = Annotated[int, Field(ge=0, le=MAX_ID)]
SimilarLimit = Annotated[int, Field(ge=1, le=100)]
ThumbSize = Annotated[int, Field(ge=16, le=1024)]  # pixels, the longer side
