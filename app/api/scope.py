"""`catalogue` and `filter` on the classify routes, and catalogue names wherever they are set."""

from __future__ import annotations

import re
from typing import Annotated

import numpy as np
from fastapi import Depends, Form, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from app.recognition.scopes import Scope, ScopeError, parse_filter
from app.services import Services

# The sku's alphabet: safe in URLs, file paths and CSV cells.
CATALOGUE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
CATALOGUE_ERROR = "catalogue must be 1-64 characters of A-Za-z0-9._-"


def valid_catalogue(name: str) -> str:
    if not CATALOGUE_PATTERN.fullmatch(name):
        raise HTTPException(422, CATALOGUE_ERROR)
    return name


def valid_catalogues(names: list[str], limit: int) -> list[str]:
    if len(names) > limit:  # counted as sent, as the document's maxItems counts
        raise HTTPException(422, f"catalogues: at most {limit} per product")
    return sorted({valid_catalogue(n) for n in names})


async def search_scope(
    catalogue: Annotated[str | None, Form()] = None,
    filter: Annotated[str | None, Form()] = None,
    catalogue_query: Annotated[str | None, Query(alias="catalogue")] = None,
    filter_query: Annotated[str | None, Query(alias="filter")] = None,
) -> Scope:
    """Form field or query parameter (form wins); every value sent is checked. (async: no
    thread hop, see app/api/deps.py.)"""
    for name in (catalogue, catalogue_query):
        if name is not None:
            valid_catalogue(name)
    try:
        filters = [parse_filter(raw) for raw in (filter, filter_query) if raw is not None]
    except ScopeError as exc:
        raise HTTPException(exc.status, str(exc)) from exc
    chosen = catalogue if catalogue is not None else catalogue_query
    return Scope(catalogue=chosen, filter=filters[0] if filters else ())


ScopeDep = Annotated[Scope, Depends(search_scope)]


async def allowed_ids(services: Services, scope: Scope) -> np.ndarray | None:
    """The image ids a search may return (None: all); 404 unknown catalogue, 422 unknown key."""
    if scope.unrestricted:
        return None
    try:
        return await run_in_threadpool(services.scopes.allowed, scope)
    except ScopeError as exc:
        raise HTTPException(exc.status, str(exc)) from exc
