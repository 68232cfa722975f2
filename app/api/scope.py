"""`catalogue` and `filter` on the classify routes, and catalogue names wherever they are set."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Query

from app.api.errors import Invalid
from app.api.types import CatalogueName, FilterText, Omittable
from app.recognition.scopes import Scope, parse_filter


def valid_catalogues(names: list[str], limit: int) -> list[str]:
    """The names' type checks each (app/api/types.py `CatalogueNames`); the limit is a setting."""
    if len(names) > limit:  # counted as sent, as the document's maxItems counts
        raise Invalid(f"catalogues: at most {limit} per product")
    return sorted(set(names))


async def search_scope(
    catalogue: Annotated[Omittable[CatalogueName], Form()] = None,
    filter: Annotated[Omittable[FilterText], Form()] = None,
    catalogue_query: Annotated[Omittable[CatalogueName], Query(alias="catalogue")] = None,
    filter_query: Annotated[Omittable[FilterText], Query(alias="filter")] = None,
) -> Scope:
    """Form field or query parameter (form wins); every value sent is checked (names by their
    type, filters here: FilterRefused). (async: no thread hop, see app/api/deps.py.)"""
    filters = [parse_filter(raw) for raw in (filter, filter_query) if raw is not None]
    chosen = catalogue if catalogue is not None else catalogue_query
    return Scope(catalogue=chosen, filter=filters[0] if filters else ())


ScopeDep = Annotated[Scope, Depends(search_scope)]
