"""Catalogue routes: list catalogues with product counts, set a product's catalogues."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path
from starlette.concurrency import run_in_threadpool

from app.api.deps import SessionFactoryDep, SettingsDep, requires
from app.api.schemas import CatalogueList, CatalogueOut, ErrorDetail, ProductOut, errors
from app.api.scope import valid_catalogues
from app.api.types import CatalogueNames, Sku
from app.catalogue.product_sets import list_catalogues, set_catalogues
from app.catalogue.products import NotFound

router = APIRouter(tags=["catalogues"])


@router.get("/catalogues", operation_id="listCatalogues", responses=errors(503))
async def get_catalogues(session_factory: SessionFactoryDep) -> CatalogueList:
    rows = await run_in_threadpool(list_catalogues, session_factory)
    return CatalogueList(items=[CatalogueOut(name=n, product_count=c) for n, c in rows])


@router.put(
    "/products/{sku}/catalogues",
    operation_id="setCatalogues",
    dependencies=[requires("edit")],
    responses={
        **errors(404, 422, 503),
        400: {"model": ErrorDetail, "description": "The body is not UTF-8 encoded JSON."},
    },
)
async def put_catalogues(
    settings: SettingsDep,
    session_factory: SessionFactoryDep,
    sku: Annotated[Sku, Path()],
    catalogues: Annotated[CatalogueNames, Body()],
) -> ProductOut:
    """Replace the product's catalogues with this JSON list (`[]`: none)."""
    names = valid_catalogues(catalogues, settings.max_catalogues_per_product)
    try:
        product = await run_in_threadpool(set_catalogues, session_factory, sku, names)
    except NotFound as exc:
        raise HTTPException(404, f"product not found: {sku}") from exc
    return ProductOut.of(product)
