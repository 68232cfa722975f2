"""Product routes: register SKUs with reference images, list, get, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import ProductsDep, ServicesDep, requires
from app.api.schemas import (
    ImagesAdded,
    ProductCreated,
    ProductOut,
    ProductPage,
    errors,
)
from app.api.scope import valid_catalogues
from app.api.types import (
    CatalogueNames,
    ImageId,
    ImageUploads,
    MetadataText,
    Omittable,
    PageLimit,
    PageOffset,
    ProductName,
    Sku,
    SkuLookup,
)
from app.api.uploads import add_references, duplicate_warnings, embed_uploads, read_all
from app.catalogue.products import NotFound, ProductExists, WriteConflict
from app.strict_json import JsonRefused, loads_strict

router = APIRouter(prefix="/products", tags=["products"])
METADATA_SHAPE = "metadata must be a JSON object"


def _valid_metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    try:
        value = loads_strict(raw)
    except JsonRefused as exc:
        raise HTTPException(422, exc.worded("metadata", METADATA_SHAPE)) from exc
    if not isinstance(value, dict):
        raise HTTPException(422, METADATA_SHAPE)
    return value


@router.post(
    "",
    status_code=201,
    operation_id="createProduct",
    dependencies=[requires("edit")],
    responses=errors(400, 409, 413, 415, 422, 503, 507),
)
async def create_product(
    services: ServicesDep,
    sku: Annotated[Sku, Form()],
    name: Annotated[ProductName, Form()],
    images: Annotated[ImageUploads, File()],
    metadata: Annotated[Omittable[MetadataText], Form()] = None,
    catalogues: Annotated[Omittable[CatalogueNames], Form()] = None,
) -> ProductCreated:
    meta = _valid_metadata(metadata)
    sets = valid_catalogues(catalogues or [], services.settings.max_catalogues_per_product)
    payloads = await read_all(images, "images", services.settings.max_images_per_request)
    uploads = await embed_uploads(services, payloads, "images")
    warnings = await duplicate_warnings(services, sku, uploads)
    try:
        product = await run_in_threadpool(
            services.products.create_product, sku, name, meta, uploads, sets
        )
    except (ProductExists, WriteConflict) as exc:
        raise HTTPException(409, f"product already exists: {sku}") from exc
    return ProductCreated(**ProductOut.of(product).model_dump(), warnings=warnings)


@router.post(
    "/{sku}/images",
    status_code=201,
    operation_id="addImages",
    dependencies=[requires("edit")],
    responses=errors(400, 404, 409, 413, 415, 422, 503, 507),
)
async def add_images(
    services: ServicesDep, sku: Annotated[Sku, Path()], images: Annotated[ImageUploads, File()]
) -> ImagesAdded:
    payloads = await read_all(images, "images", services.settings.max_images_per_request)
    return await add_references(services, sku, payloads, "images")


@router.get("", operation_id="listProducts", responses=errors(422, 503))
async def list_products(
    store: ProductsDep,
    limit: Annotated[PageLimit, Query()] = 50,
    offset: Annotated[PageOffset, Query()] = 0,
) -> ProductPage:
    products, total = await run_in_threadpool(store.list_products, limit, offset)
    return ProductPage(
        items=[ProductOut.of(p) for p in products], total=total, limit=limit, offset=offset
    )


@router.get("/{sku}", operation_id="getProduct", responses=errors(404, 503))
async def get_product(store: ProductsDep, sku: Annotated[SkuLookup, Path()]) -> ProductOut:
    try:
        return ProductOut.of(await run_in_threadpool(store.get_product, sku))
    except NotFound as exc:
        raise HTTPException(404, f"product not found: {sku}") from exc


@router.delete(
    "/{sku}",
    status_code=204,
    operation_id="deleteProduct",
    dependencies=[requires("admin")],
    responses=errors(404, 503),
)
async def delete_product(store: ProductsDep, sku: Annotated[SkuLookup, Path()]) -> Response:
    try:
        await run_in_threadpool(store.delete_product, sku)
    except NotFound as exc:
        raise HTTPException(404, f"product not found: {sku}") from exc
    return Response(status_code=204)


@router.delete(
    "/{sku}/images/{image_id}",
    status_code=204,
    operation_id="deleteImage",
    dependencies=[requires("admin")],
    responses=errors(404, 422, 503),
)
async def delete_image(
    store: ProductsDep,
    sku: Annotated[SkuLookup, Path()],
    image_id: Annotated[ImageId, Path()],
) -> Response:
    try:
        await run_in_threadpool(store.delete_image, sku, image_id)
    except NotFound as exc:
        raise HTTPException(404, f"image not found: {sku}/{image_id}") from exc
    return Response(status_code=204)
