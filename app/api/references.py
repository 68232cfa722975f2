"""Reference images over HTTP (bytes and thumbnails) and the products that look alike."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from app.api.deps import CatalogueDep, ClassifierDep
from app.api.schemas import SimilarProduct, SimilarProducts, errors
from app.api.types import ImageId, Omittable, SimilarLimit, SkuLookup, ThumbSize

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


@router.get(
    "/{sku}/images/{image_id}",
    operation_id="getImage",
    response_class=Response,
    responses={**IMAGE_RESPONSES, **errors(404, 422, 503)},
)
async def get_image(
    catalogue: CatalogueDep,
    request: Request,
    sku: Annotated[SkuLookup, Path()],
    image_id: Annotated[ImageId, Path()],
    size: Annotated[Omittable[ThumbSize], Query()] = None,
) -> Response:
    stored = await catalogue.image(sku, image_id)
    etag = f'"{stored.sha256}"' if size is None else f'"{stored.sha256}-{size}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, **NO_SNIFF}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    data = await catalogue.image_bytes(stored, size)
    media_type = "image/jpeg" if size is not None else MEDIA_TYPES[stored.image_format]
    return Response(data, media_type=media_type, headers=headers)


@router.get("/{sku}/similar", operation_id="getSimilar", responses=errors(404, 422, 503))
async def get_similar(
    catalogue: CatalogueDep,
    classifier: ClassifierDep,
    sku: Annotated[SkuLookup, Path()],
    limit: Annotated[SimilarLimit, Query()] = 10,
) -> SimilarProducts:
    """Other products whose references score highest against this one's: the confusable
    pairs worth photographing better."""
    similar = await catalogue.similar(sku, limit)
    return SimilarProducts(
        sku=sku, similar=[SimilarProduct.of(s) for s in similar], model=classifier.model_id
    )
