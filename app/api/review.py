"""The review queue's routes: list what was kept, look at a photo, confirm it as a product's
reference, reject it, purge the queue (app/recognition/review.py says what is kept)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Query, Response

from app.api.deps import ClassifierDep, RegistrarDep, ReviewDep, requires
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

router = APIRouter(prefix="/review", tags=["review"])

ItemId = Annotated[ImageId, Path(description="a review item's id")]


@router.get(
    "", operation_id="listReview", dependencies=[requires("edit")], responses=errors(422, 503)
)
async def list_review(
    review: ReviewDep,
    limit: Annotated[PageLimit, Query()] = 50,
    offset: Annotated[PageOffset, Query()] = 0,
) -> ReviewPage:
    """Kept classifications, most uncertain first (smallest margin over the runner-up)."""
    items, total = await review.page(limit, offset)
    return ReviewPage(
        mode=review.mode,
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
    review: ReviewDep, classifier: ClassifierDep, limit: Annotated[SimilarLimit, Query()] = 20
) -> PhotoNeeds:
    """Which products most need a shelf photo: those the kept uncertain answers name first
    most often, each with its closest look-alike (GET /products/{sku}/similar's first)."""
    needs = await review.needs(limit)
    items = [
        PhotoNeed(
            sku=need.sku,
            uncertain=need.uncertain,
            look_alike=None if need.look_alike is None else SimilarProduct.of(need.look_alike),
        )
        for need in needs
    ]
    return PhotoNeeds(items=items, model=classifier.model_id)


@router.get(
    "/{item_id}/photo",
    operation_id="getReviewPhoto",
    dependencies=[requires("edit")],
    response_class=Response,
    responses={200: IMAGE_RESPONSES[200], **errors(404, 422, 503)},
)
async def get_review_photo(review: ReviewDep, item_id: ItemId) -> Response:
    data, image_format = await review.photo(item_id)
    media_type = MEDIA_TYPES.get(image_format, "application/octet-stream")
    # A shelf photo may show people: no cache, shared or private, keeps a copy.
    return Response(data, media_type=media_type, headers={"Cache-Control": "no-store", **NO_SNIFF})


@router.post(
    "/{item_id}/confirm",
    status_code=201,
    operation_id="confirmReview",
    dependencies=[requires("edit")],
    response_model=ImagesAdded,
    responses=errors(400, 404, 409, 413, 422, 503, 507),
)
async def confirm_review(
    registrar: RegistrarDep, item_id: ItemId, sku: Annotated[Sku, Form()]
) -> Response:
    """The photo is product `sku`: it becomes a reference of it, searchable at once, through
    the path of POST /products/{sku}/images (near-duplicate warnings included); the item goes.
    Of two confirmations of one item, one wins and the other finds no such item (404)."""
    return await registrar.confirm(item_id, sku, answer=ImagesAdded.made)


@router.post(
    "/{item_id}/reject",
    status_code=204,
    operation_id="rejectReview",
    dependencies=[requires("edit")],
    responses=errors(404, 422, 503),
)
async def reject_review(
    review: ReviewDep,
    item_id: ItemId,
    reason: Annotated[
        Literal["not_a_product", "not_in_catalogue"],
        Form(description="not a product at all, or a product the catalogue does not hold"),
    ],
) -> Response:
    """Nothing of the item is left behind: its row and its photo go."""
    await review.reject(item_id)
    return Response(status_code=204)


@router.delete(
    "",
    status_code=204,
    operation_id="purgeReview",
    dependencies=[requires("admin")],
    responses=errors(503),
)
async def purge_review(review: ReviewDep) -> Response:
    await review.purge()
    return Response(status_code=204)
