"""Reference images over HTTP (bytes and thumbnails) and the products that look alike."""

from __future__ import annotations

import io
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from app.api.deps import (
    InferenceDep,
    NamesDep,
    ProductsDep,
    SessionFactoryDep,
    SettingsDep,
    ShardsDep,
)
from app.api.schemas import SimilarProduct, SimilarProducts, errors
from app.api.types import ImageId, Omittable, SimilarLimit, SkuLookup, ThumbSize
from app.catalogue.product_sets import find_image
from app.catalogue.products import NotFound
from app.encoder.decode import decode_photo
from app.recognition.hygiene import look_alikes

router = APIRouter(prefix="/products", tags=["products"])

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "GIF": "image/gif",
}
# An image id always names the same bytes while it exists, but SQLite may hand a deleted id
# out again, so clients revalidate after a while (a cheap 304) instead of caching forever.
CACHE_CONTROL = "private, max-age=3600"
# Uploaded bytes are served as the type they decoded as, never as whatever a browser guesses.
NO_SNIFF = {"X-Content-Type-Options": "nosniff"}
IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The stored bytes, or a JPEG thumbnail with `size`.",
        "content": {
            t: {"schema": {"type": "string", "format": "binary"}} for t in MEDIA_TYPES.values()
        },
    },
    304: {"description": "The client's copy (`If-None-Match`) is current."},
}


def thumbnail(data: bytes, size: int, max_pixels: int) -> bytes:
    """Longer side at most `size`, upright (EXIF applied), as JPEG."""
    # Decoded at the smallest scale that still holds `size` pixels across.
    image = decode_photo(data, max_pixels, lambda w, h: max(w, h) // size).image
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@router.get(
    "/{sku}/images/{image_id}",
    operation_id="getImage",
    response_class=Response,
    responses={**IMAGE_RESPONSES, **errors(404, 422, 503)},
)
async def get_image(
    settings: SettingsDep,
    products: ProductsDep,
    session_factory: SessionFactoryDep,
    request: Request,
    sku: Annotated[SkuLookup, Path()],
    image_id: Annotated[ImageId, Path()],
    size: Annotated[Omittable[ThumbSize], Query()] = None,
) -> Response:
    try:
        stored = await run_in_threadpool(find_image, session_factory, sku, image_id)
    except NotFound as exc:
        raise HTTPException(404, f"image not found: {sku}/{image_id}") from exc
    etag = f'"{stored.sha256}"' if size is None else f'"{stored.sha256}-{size}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, **NO_SNIFF}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    data = await run_in_threadpool(products.blobs.get, stored.blob_key)
    if size is None:
        return Response(data, media_type=MEDIA_TYPES[stored.image_format], headers=headers)
    small = await run_in_threadpool(thumbnail, data, size, settings.max_image_pixels)
    return Response(small, media_type="image/jpeg", headers=headers)


@router.get("/{sku}/similar", operation_id="getSimilar", responses=errors(404, 422, 503))
async def get_similar(
    shards: ShardsDep,
    names: NamesDep,
    inference: InferenceDep,
    products: ProductsDep,
    sku: Annotated[SkuLookup, Path()],
    limit: Annotated[SimilarLimit, Query()] = 10,
) -> SimilarProducts:
    """Other products whose references score highest against this one's: the confusable
    pairs worth photographing better."""
    try:
        similar = await run_in_threadpool(
            look_alikes,
            products,
            shards,
            names,
            sku,
            limit,
            inference.vectors_per_image,
        )
    except NotFound as exc:
        raise HTTPException(404, f"product not found: {sku}") from exc
    return SimilarProducts(
        sku=sku,
        similar=[SimilarProduct(**asdict(s)) for s in similar],
        model=shards.model_id,
    )
