"""Catalogue routes: list catalogues with product counts, set a product's catalogues."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Response

from app.api.deps import CatalogueDep, LimitsDep, requires
from app.api.schemas import CatalogueList, CatalogueOut, ErrorDetail, ProductOut, encoded, errors
from app.api.scope import valid_catalogues
from app.api.types import CatalogueNames, Sku

router = APIRouter(tags=["catalogues"])


@router.get("/catalogues", operation_id="listCatalogues", responses=errors(503))
async def get_catalogues(catalogue: CatalogueDep) -> CatalogueList:
    rows = await catalogue.catalogues()
    return CatalogueList(items=[CatalogueOut(name=n, product_count=c) for n, c in rows])


@router.put(
    "/products/{sku}/catalogues",
    operation_id="setCatalogues",
    dependencies=[requires("edit")],
    response_model=ProductOut,
    responses={
        **errors(404, 422, 503),
        400: {"model": ErrorDetail, "description": "The body is not UTF-8 encoded JSON."},
    },
)
async def put_catalogues(
    catalogue: CatalogueDep,
    limits: LimitsDep,
    sku: Annotated[Sku, Path()],
    catalogues: Annotated[CatalogueNames, Body()],
) -> Response:
    """Replace the product's catalogues with this JSON list (`[]`: none)."""
    names = valid_catalogues(catalogues, limits.max_catalogues_per_product)
    return await catalogue.set_catalogues(sku, names, lambda p: encoded(ProductOut.of(p)))
