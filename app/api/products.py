"""Product routes: register SKUs with reference images, list, get, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Response

from app.api.barcode_fields import gtin_or_422, valid_barcodes
from app.api.deps import CatalogueDep, LimitsDep, RegistrarDep, requires
from app.api.json_fields import parse_metadata
from app.api.schemas import ImagesAdded, ProductCreated, ProductOut, ProductPage, encoded, errors
from app.api.scope import valid_catalogues
from app.api.types import (
    BarcodeText,
    BarcodeTexts,
    CatalogueNames,
    ImageId,
    ImageUploads,
    MetadataText,
    NewBarcodes,
    Omittable,
    PageLimit,
    PageOffset,
    ProductName,
    Sku,
    SkuLookup,
)
from app.api.uploads import read_all
from app.recognition.registration import NewProduct

router = APIRouter(prefix="/products", tags=["products"])


@router.post(
    "",
    status_code=201,
    operation_id="createProduct",
    dependencies=[requires("edit")],
    response_model=ProductCreated,
    responses=errors(400, 409, 413, 415, 422, 503, 507),
)
async def create_product(
    registrar: RegistrarDep,
    limits: LimitsDep,
    sku: Annotated[Sku, Form()],
    name: Annotated[ProductName, Form()],
    images: Annotated[ImageUploads, File()],
    metadata: Annotated[Omittable[MetadataText], Form()] = None,
    catalogues: Annotated[Omittable[CatalogueNames], Form()] = None,
    barcodes: Annotated[Omittable[BarcodeTexts], Form()] = None,
) -> Response:
    product = NewProduct(
        sku,
        name,
        parse_metadata(metadata),
        valid_catalogues(catalogues or [], limits.max_catalogues_per_product),
        valid_barcodes(barcodes or []),
    )
    photos = await read_all(images, "images", limits.max_images_per_request)
    return await registrar.create(product, photos, answer=ProductCreated.made)


@router.post(
    "/{sku}/images",
    status_code=201,
    operation_id="addImages",
    dependencies=[requires("edit")],
    response_model=ImagesAdded,
    responses=errors(400, 404, 409, 413, 415, 422, 503, 507),
)
async def add_images(
    registrar: RegistrarDep,
    limits: LimitsDep,
    sku: Annotated[Sku, Path()],
    images: Annotated[ImageUploads, File()],
) -> Response:
    photos = await read_all(images, "images", limits.max_images_per_request)
    return await registrar.add_images(sku, photos, answer=ImagesAdded.made)


@router.get("", operation_id="listProducts", responses=errors(422, 503))
async def list_products(
    catalogue: CatalogueDep,
    limit: Annotated[PageLimit, Query()] = 50,
    offset: Annotated[PageOffset, Query()] = 0,
    barcode: Annotated[Omittable[BarcodeText], Query()] = None,
) -> ProductPage:
    """Oldest first; with `barcode`, the one product holding that code (or none)."""
    if barcode is not None:
        holder = await catalogue.find_by_barcode(gtin_or_422(barcode, "barcode"))
        found = [] if holder is None else [ProductOut.of(holder)]
        return ProductPage(
            items=found[offset:][:limit], total=len(found), limit=limit, offset=offset
        )
    products, total = await catalogue.page(limit, offset)
    items = [ProductOut.of(p) for p in products]
    return ProductPage(items=items, total=total, limit=limit, offset=offset)


@router.post(
    "/{sku}/barcodes",
    operation_id="addBarcodes",
    dependencies=[requires("edit")],
    response_model=ProductOut,
    responses=errors(404, 409, 422, 503),
)
async def add_barcodes(
    catalogue: CatalogueDep,
    sku: Annotated[Sku, Path()],
    barcodes: Annotated[NewBarcodes, Form()],
) -> Response:
    """The codes printed on the product (GTIN-8/12/13/14); one product per code."""
    added = valid_barcodes(barcodes)
    return await catalogue.set_barcodes(sku, added, [], lambda p: encoded(ProductOut.of(p)))


@router.delete(
    "/{sku}/barcodes/{barcode}",
    status_code=204,
    operation_id="deleteBarcode",
    dependencies=[requires("admin")],
    responses=errors(404, 422, 503),
)
async def delete_barcode(
    catalogue: CatalogueDep,
    sku: Annotated[SkuLookup, Path()],
    barcode: Annotated[BarcodeText, Path()],
) -> Response:
    gtin = gtin_or_422(barcode, "barcode")
    await catalogue.set_barcodes(sku, [], [gtin], lambda p: None)
    return Response(status_code=204)


@router.get("/{sku}", operation_id="getProduct", responses=errors(404, 503))
async def get_product(catalogue: CatalogueDep, sku: Annotated[SkuLookup, Path()]) -> ProductOut:
    return ProductOut.of(await catalogue.get(sku))


@router.delete(
    "/{sku}",
    status_code=204,
    operation_id="deleteProduct",
    dependencies=[requires("admin")],
    responses=errors(404, 503),
)
async def delete_product(catalogue: CatalogueDep, sku: Annotated[SkuLookup, Path()]) -> Response:
    await catalogue.delete(sku)
    return Response(status_code=204)


@router.delete(
    "/{sku}/images/{image_id}",
    status_code=204,
    operation_id="deleteImage",
    dependencies=[requires("admin")],
    responses=errors(404, 422, 503),
)
async def delete_image(
    catalogue: CatalogueDep,
    sku: Annotated[SkuLookup, Path()],
    image_id: Annotated[ImageId, Path()],
) -> Response:
    await catalogue.delete_image(sku, image_id)
    return Response(status_code=204)
