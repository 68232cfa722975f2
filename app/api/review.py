"""The review queue's routes: list what was kept, look at a photo, confirm it as a product's
reference, reject it, purge the queue (app/recognition/review.py says what is kept)."""

from __future__ import annotations

import io
from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Path, Query, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from app.api.deps import ServicesDep, requires
from app.api.references import IMAGE_RESPONSES, MEDIA_TYPES, NO_SNIFF
from app.api.schemas import (
    ImagesAdded,
    PhotoNeed,
    PhotoNeeds,
    ReviewItemOut,
    ReviewPage,
    SimilarProduct,
    errors,
)
from app.api.types import ImageId, PageLimit, PageOffset, SimilarLimit, Sku
from app.api.uploads import add_references
from app.catalogue.products import NotFound
from app.catalogue.review_queue import ReviewQueue
from app.recognition.hygiene import look_alikes

router = APIRouter(prefix="/review", tags=["review"])

ItemId = Annotated[ImageId, Path(description="a review item's id")]


def _queue(services: ServicesDep) -> ReviewQueue:
    return services.review.queue


def _read_photo(queue: ReviewQueue, item_id: int) -> tuple[bytes, str] | None:
    """An item's photo and its media type (off the event loop: SQL, a file, PIL's header read)."""
    data = queue.photo(item_id)
    if data is None:
        return None
    kind = Image.open(io.BytesIO(data)).format or "JPEG"
    return data, MEDIA_TYPES.get(kind, "application/octet-stream")


async def _photo(queue: ReviewQueue, item_id: int) -> tuple[bytes, str]:
    found = await run_in_threadpool(_read_photo, queue, item_id)
    if found is None:
        raise HTTPException(404, f"review item not found: {item_id}")
    return found


@router.get(
    "", operation_id="listReview", dependencies=[requires("edit")], responses=errors(422, 503)
)
async def list_review(
    services: ServicesDep,
    limit: Annotated[PageLimit, Query()] = 50,
    offset: Annotated[PageOffset, Query()] = 0,
) -> ReviewPage:
    """Kept classifications, most uncertain first (smallest margin over the runner-up)."""
    items, total = await run_in_threadpool(_queue(services).page, limit, offset)
    return ReviewPage(
        mode=services.review.mode,
        items=[ReviewItemOut.of(i) for i in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/needs",
    operation_id="listPhotoNeeds",
    dependencies=[requires("edit")],
    responses=errors(422, 503),
)
async def photo_needs(
    services: ServicesDep, limit: Annotated[SimilarLimit, Query()] = 20
) -> PhotoNeeds:
    """Which products most need a shelf photo: those the kept uncertain answers name first
    most often, each with its closest look-alike (GET /products/{sku}/similar's first)."""
    counts = await run_in_threadpool(_queue(services).uncertain_counts)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    items = []
    for sku, uncertain in ranked:
        try:
            similar = await run_in_threadpool(
                look_alikes,
                services.products,
                services.index.store,
                services.names,
                sku,
                1,
                services.inference.vectors_per_image,
            )
        except NotFound:
            continue  # deleted since
        look_alike = SimilarProduct(**asdict(similar[0])) if similar else None
        items.append(PhotoNeed(sku=sku, uncertain=uncertain, look_alike=look_alike))
    return PhotoNeeds(items=items, model=services.model_id)


@router.get(
    "/{item_id}/photo",
    operation_id="getReviewPhoto",
    dependencies=[requires("edit")],
    response_class=Response,
    responses={200: IMAGE_RESPONSES[200], **errors(404, 422, 503)},
)
async def get_review_photo(services: ServicesDep, item_id: ItemId) -> Response:
    data, media_type = await _photo(_queue(services), item_id)
    # A shelf photo may show people: no cache, shared or private, keeps a copy.
    return Response(data, media_type=media_type, headers={"Cache-Control": "no-store", **NO_SNIFF})


@router.post(
    "/{item_id}/confirm",
    status_code=201,
    operation_id="confirmReview",
    dependencies=[requires("edit")],
    responses=errors(400, 404, 409, 413, 422, 503, 507),
)
async def confirm_review(
    services: ServicesDep, item_id: ItemId, sku: Annotated[Sku, Form()]
) -> ImagesAdded:
    """The photo is product `sku`: it becomes a reference of it, searchable at once, through
    the path of POST /products/{sku}/images (near-duplicate warnings included); the item goes."""
    queue = _queue(services)
    data, _ = await _photo(queue, item_id)
    added = await add_references(services, sku, [data], "photo")
    await run_in_threadpool(queue.remove, item_id)
    return added


@router.post(
    "/{item_id}/reject",
    status_code=204,
    operation_id="rejectReview",
    dependencies=[requires("edit")],
    responses=errors(404, 422, 503),
)
async def reject_review(
    services: ServicesDep,
    item_id: ItemId,
    reason: Annotated[
        Literal["not_a_product", "not_in_catalogue"],
        Form(description="not a product at all, or a product the catalogue does not hold"),
    ],
) -> Response:
    """Nothing of the item is left behind: its row and its photo go."""
    if not await run_in_threadpool(_queue(services).remove, item_id):
        raise HTTPException(404, f"review item not found: {item_id}")
    return Response(status_code=204)


@router.delete(
    "",
    status_code=204,
    operation_id="purgeReview",
    dependencies=[requires("admin")],
    responses=errors(503),
)
async def purge_review(services: ServicesDep) -> Response:
    await run_in_threadpool(_queue(services).purge)
    return Response(status_code=204)
