"""How errors become answers: the contract's `{"detail": ...}` body for every failure, and the
status a failing dependency (database, disk) maps to."""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sql_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.openapi import allowed_methods

log = logging.getLogger("retailklip")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            loc = ".".join(
                str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")
            )
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
