"""How errors become answers: the contract's `{"detail": ...}` body for every failure.

`REFUSALS` is the one table of what the layers below refuse (exceptions carrying data only)
and how the contract words and numbers each; every entry is an exception handler, so routes
never catch them. docs/API.md is checked against this table (tests/unit/test_error_table.py),
with each entry's `example` rendered as the documentation writes it. Failing dependencies
(database, disk) are mapped below it.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sql_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.openapi import allowed_methods
from app.catalogue.errors import (
    BarcodeNotFound,
    BarcodeTaken,
    ConcurrentWrite,
    ImageNotFound,
    ProductExists,
    ProductNotFound,
    ReviewItemNotFound,
    UnknownCatalogue,
    UnknownMetadataKey,
)
from app.encoder.decode import MAX_ASPECT_RATIO, ImageDecodeError
from app.recognition.classify import IndexIncomplete
from app.recognition.regions import BoxOutside
from app.recognition.scopes import FilterRefused
from app.recognition.shelf import DetectorMissing
from app.recognition.uploads import UploadRejected

log = logging.getLogger("retailklip")


class Invalid(ValueError):
    """A request field the contract refuses beyond what its type checks (a JSON text's
    content, a count over a setting); the message names the field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Refusal:
    status: Callable[[Any], int]
    detail: Callable[[Any], str]
    example: Exception  # with placeholder data: `detail(example)` is what docs/API.md shows


def _always(status: int) -> Callable[[Any], int]:
    return lambda _: status


# What each reason an upload is not a usable image answers, and how it is worded.
DECODE_REFUSALS: dict[str, tuple[int, str]] = {
    "empty": (400, "empty file"),
    "not_an_image": (400, "file is not a decodable image"),
    "truncated": (400, "image is truncated or corrupt"),
    "unsupported_format": (415, "unsupported image format: {format}"),
    "too_many_pixels": (422, "image has too many pixels"),
    "aspect_ratio": (422, f"image aspect ratio is over {MAX_ASPECT_RATIO}:1"),
}


def _upload_detail(exc: UploadRejected) -> str:
    _, text = DECODE_REFUSALS[exc.error.reason]
    return f"{exc.label}: {text.format(format=exc.error.image_format)}"


REFUSALS: dict[type[Exception], Refusal] = {
    UploadRejected: Refusal(
        lambda e: DECODE_REFUSALS[e.error.reason][0],
        _upload_detail,
        UploadRejected("images", 0, ImageDecodeError("not_an_image")),
    ),
    Invalid: Refusal(_always(422), lambda e: e.message, Invalid("<field>: <reason>")),
    FilterRefused: Refusal(_always(422), lambda e: e.message, FilterRefused("filter: <reason>")),
    BoxOutside: Refusal(
        _always(422),
        lambda e: f"boxes[{e.index}]: outside the image ({e.width}x{e.height})",
        BoxOutside(0, 348, 348),
    ),
    ProductNotFound: Refusal(
        _always(404), lambda e: f"product not found: {e.sku}", ProductNotFound("<sku>")
    ),
    ImageNotFound: Refusal(
        _always(404),
        lambda e: f"image not found: {e.sku}/{e.image_id}",
        ImageNotFound("<sku>", "<id>"),  # type: ignore[arg-type]  # a placeholder
    ),
    ReviewItemNotFound: Refusal(
        _always(404),
        lambda e: f"review item not found: {e.item_id}",
        ReviewItemNotFound("<id>"),  # type: ignore[arg-type]  # a placeholder
    ),
    UnknownCatalogue: Refusal(
        _always(404), lambda e: f"catalogue not found: {e.name}", UnknownCatalogue("<name>")
    ),
    UnknownMetadataKey: Refusal(
        _always(404),
        lambda e: f'filter: no product has metadata key "{e.key}"',
        UnknownMetadataKey("<key>"),
    ),
    ProductExists: Refusal(
        _always(409), lambda e: f"product already exists: {e.sku}", ProductExists("<sku>")
    ),
    BarcodeTaken: Refusal(
        _always(409),
        lambda e: f"barcode {e.gtin} is held by product {e.holder}",
        BarcodeTaken("<gtin>", "<sku>"),
    ),
    BarcodeNotFound: Refusal(
        _always(404),
        lambda e: f"barcode not found: {e.sku}/{e.gtin}",
        BarcodeNotFound("<sku>", "<gtin>"),
    ),
    ConcurrentWrite: Refusal(
        _always(409),
        lambda e: f"concurrent write to product {e.sku}; retry",
        ConcurrentWrite("<sku>"),
    ),
    DetectorMissing: Refusal(
        _always(422),
        lambda e: "boxes: required, this service has no product detector (RETAILKLIP_DETECTOR)",
        DetectorMissing(),
    ),
    IndexIncomplete: Refusal(
        _always(503),
        lambda e: f"index for model {e.model_id} incomplete",
        IndexIncomplete("<id>"),
    ),
}


def refusal_answer(exc: Exception) -> JSONResponse:
    refusal = REFUSALS[type(exc)]
    return JSONResponse({"detail": refusal.detail(exc)}, status_code=refusal.status(exc))


def _location(loc: tuple[int | str, ...]) -> str:
    """`("body", "barcodes", 0)` -> `barcodes[0]`: the field as the routes' own errors name it."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path"):
            continue
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def install_error_handlers(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        return refusal_answer(exc)

    for kind in REFUSALS:
        app.add_exception_handler(kind, refused)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            loc = _location(error.get("loc", ()))
            parts.append(f"{loc}: {error.get('msg')}" if loc else str(error.get("msg")))
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            # Starlette names only the methods of the first route matching the path; a client
            # must learn all of them (GET and DELETE on /products/{sku}).
            allow = allowed_methods(app.openapi(), request.scope["path"])
            if allow:
                exc.headers = {**(exc.headers or {}), "Allow": allow}
        return await http_exception_handler(request, exc)

    @app.exception_handler(sql_errors.OperationalError)
    @app.exception_handler(sql_errors.InterfaceError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The connection failed or dropped (PostgreSQL down or restarting): nothing was
        # acknowledged, the pool reconnects by itself (pre-ping) once the database is back.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "database unavailable"}, status_code=503)

    @app.exception_handler(sql_errors.TimeoutError)
    async def database_busy(request: Request, exc: Exception) -> JSONResponse:
        log.warning("no database connection free on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "database busy, retry later"}, status_code=503)

    @app.exception_handler(OSError)
    async def storage_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # Blob bytes are written (temp file, fsync, rename) before any row: a full disk
            # fails the request before anything refers to the bytes.
            log.error("storage full on %s %s: %s", request.method, request.url.path, exc)
            return JSONResponse({"detail": "insufficient storage for image bytes"}, 507)
        return await unexpected_error(request, exc)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)
