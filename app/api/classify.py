"""Classification routes: HTTP in, HTTP out; the pipeline is app/recognition/classify.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, Query
from fastapi.routing import APIRoute

from app.api.deps import ClassifierDep, LimitsDep, ReviewDep
from app.api.errors import Invalid
from app.api.json_fields import parse_boxes
from app.api.schemas import (
    BatchClassifyResult,
    ClassifyResult,
    RegionResult,
    RegionsResult,
    errors,
)
from app.api.scope import ScopeDep
from app.api.types import (
    TOP_K_MIN,
    BoxesText,
    ImageUpload,
    ImageUploads,
    MinScore,
    Omittable,
    TopK,
)
from app.api.uploads import read_all
from app.recognition.classify import ClassifyOptions
from app.recognition.regions import Box
from app.recognition.review import Review
from app.recognition.search import Verdict
from app.strict_json import loads_strict

router = APIRouter(tags=["classify"])


async def classify_options(
    limits: LimitsDep,
    top_k: Annotated[Omittable[TopK], Form()] = None,
    min_score: Annotated[Omittable[MinScore], Form()] = None,
    top_k_query: Annotated[Omittable[TopK], Query(alias="top_k")] = None,
    min_score_query: Annotated[Omittable[MinScore], Query(alias="min_score")] = None,
) -> ClassifyOptions:
    """`top_k` / `min_score` as form fields or query parameters (form wins); every value sent is
    checked, so a request is never half valid. `min_score`'s range is its type's; `top_k`'s ends
    at a setting, so the whole range is checked here (app/api/types.py)."""
    high = limits.max_top_k
    if any(v is not None and not TOP_K_MIN <= v <= high for v in (top_k, top_k_query)):
        raise Invalid(f"top_k must be between {TOP_K_MIN} and {high}")
    k = top_k if top_k is not None else top_k_query
    k = limits.default_top_k if k is None else k
    score = min_score if min_score is not None else min_score_query
    return ClassifyOptions(k, limits.unknown_threshold if score is None else score)


OptionsDep = Annotated[ClassifyOptions, Depends(classify_options)]


def for_review(
    review: Review,
    after: BackgroundTasks,
    data: bytes,
    verdicts: list[Verdict],
    boxes: list[Box] | None = None,
) -> None:
    """The answers the review queue wants, kept once the response has gone (a thread)."""
    for i, verdict in enumerate(verdicts):
        if review.wants(verdict):
            after.add_task(review.keep, data, verdict, None if boxes is None else boxes[i])


async def classify(
    classifier: ClassifierDep,
    review: ReviewDep,
    limits: LimitsDep,
    options: OptionsDep,
    scope: ScopeDep,
    after: BackgroundTasks,
    image: Annotated[ImageUpload, File()],
    boxes: Annotated[Omittable[BoxesText], Form()] = None,
) -> ClassifyResult | RegionsResult:
    """One photo, or the regions of one photo (`boxes`): app/recognition/classify.py."""
    [data] = await read_all([image], "image", 1)
    if boxes is None:
        verdict = await classifier.classify(data, options, scope)
        for_review(review, after, data, [verdict])
        return ClassifyResult.of(verdict)
    regions = parse_boxes(boxes, limits.max_boxes)
    verdicts = await classifier.classify_regions(data, regions, options, scope)
    for_review(review, after, data, verdicts, regions)
    return _regions(loads_strict(boxes), verdicts, classifier.model_id)


def _regions(sent: list[list[float]], verdicts: list[Verdict], model: str) -> RegionsResult:
    """One region per box, each box as the client sent it."""
    return RegionsResult(
        regions=[
            RegionResult(
                box=box,
                **ClassifyResult.of(verdict).model_dump(
                    include={"matches", "unknown", "verdict", "barcodes"}
                ),
            )
            for box, verdict in zip(sent, verdicts, strict=True)
        ],
        model=model,
    )


def declared_route() -> APIRoute:
    """The `POST /classify` route `classify` declares."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint is classify:
            return route
    raise LookupError("POST /classify is not routed")


router.add_api_route(
    "/classify",
    classify,
    methods=["POST"],
    operation_id="classify",
    responses=errors(400, 404, 413, 415, 422, 503),
)


@router.post(
    "/classify/batch",
    operation_id="classifyBatch",
    responses=errors(400, 404, 413, 415, 422, 503),
)
async def classify_batch(
    classifier: ClassifierDep,
    review: ReviewDep,
    limits: LimitsDep,
    options: OptionsDep,
    scope: ScopeDep,
    after: BackgroundTasks,
    images: Annotated[ImageUploads, File()],
) -> BatchClassifyResult:
    payloads = await read_all(images, "images", limits.max_images_per_request)
    verdicts = await classifier.classify_batch(payloads, options, scope)
    for data, verdict in zip(payloads, verdicts, strict=True):
        for_review(review, after, data, [verdict])
    return BatchClassifyResult(
        results=[ClassifyResult.of(v) for v in verdicts], model=classifier.model_id
    )
