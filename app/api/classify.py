"""Classification routes."""

from __future__ import annotations

import json
import time
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile
from fastapi.routing import APIRoute

from app.api.deps import ServicesDep
from app.api.schemas import (
    BatchClassifyResult,
    ClassifyResult,
    RegionResult,
    RegionsResult,
    errors,
)
from app.api.scope import ScopeDep, allowed_ids
from app.api.uploads import decode_all, read_all
from app.encoder.boxes import BoxError, parse_boxes
from app.encoder.preprocess import ImageDecodeError
from app.recognition.scopes import Scope
from app.recognition.search import Verdict, classify_vectors
from app.services import Services

router = APIRouter(tags=["classify"])


@dataclass(frozen=True)
class ClassifyOptions:
    top_k: int
    threshold: float


async def classify_options(
    services: ServicesDep,
    top_k: Annotated[int | None, Form()] = None,
    min_score: Annotated[float | None, Form()] = None,
    top_k_query: Annotated[int | None, Query(alias="top_k")] = None,
    min_score_query: Annotated[float | None, Query(alias="min_score")] = None,
) -> ClassifyOptions:
    """`top_k` / `min_score` as form fields or query parameters (form wins); every value sent is
    checked, so a request is never half valid."""
    settings = services.settings
    if any(v is not None and not 1 <= v <= settings.max_top_k for v in (top_k, top_k_query)):
        raise HTTPException(422, f"top_k must be between 1 and {settings.max_top_k}")
    if any(v is not None and not -1.0 <= v <= 1.0 for v in (min_score, min_score_query)):
        raise HTTPException(422, "min_score must be between -1 and 1")
    k = top_k if top_k is not None else top_k_query
    k = settings.default_top_k if k is None else k
    score = min_score if min_score is not None else min_score_query
    threshold = settings.unknown_threshold if score is None else score
    return ClassifyOptions(k, threshold)


OptionsDep = Annotated[ClassifyOptions, Depends(classify_options)]


@dataclass(frozen=True)
class Searchable:
    allowed: np.ndarray | None  # image ids the scope allows (None: all)
    # The change log's head, read from the request's start (beside the forward pass): lets
    # the hit lookup skip SQL when the shards had applied it (app/index/image_owners.py).
    head: Future[int]


async def _searchable(services: Services, scope: Scope) -> Searchable:
    """Checks every classify route makes before a forward pass (a bad scope is cheap): the
    index is complete, and the scope's allowed image ids."""
    if not services.shards.complete:
        # Never answer from a half-built index (a reindex to this model is still running).
        raise HTTPException(503, f"index for model {services.shards.model_id} incomplete")
    head = services.shards.head_reads.after(time.monotonic())
    return Searchable(await allowed_ids(services, scope), head)


@dataclass(frozen=True)
class VerdictSearch:
    """FAISS search and hit lookup for query vectors, run on the model thread right after their
    forward pass (app/runtime/inference.py); requests of one batch with the same options, scope and
    head read share one call."""

    services: Services
    options: ClassifyOptions
    searchable: Searchable

    @property
    def key(self) -> Hashable:
        # The scope cache hands out one array per scope, and head reads are shared: identity
        # says "the same" here.
        return (self.options, id(self.searchable.allowed), id(self.searchable.head))

    def __call__(self, vectors: np.ndarray) -> list[Verdict]:
        return classify_vectors(
            self.services.shards,
            self.services.catalogue,
            np.asarray(vectors),
            self.options.top_k,
            self.options.threshold,
            self.services.inference.vectors_per_image,
            self.searchable.allowed,
            self.searchable.head,
        )


async def _classify(
    services: Services,
    payloads: list[bytes],
    field: str,
    options: ClassifyOptions,
    scope: Scope,
) -> list[ClassifyResult]:
    searchable = await _searchable(services, scope)
    decoded = await decode_all(services, payloads, field)
    search = VerdictSearch(services, options, searchable)
    verdicts = await services.inference.embed_then([d.pixels for d in decoded], search)
    return [ClassifyResult.of(v) for v in verdicts]


async def _classify_regions(
    services: Services, data: bytes, raw_boxes: str, options: ClassifyOptions, scope: Scope
) -> RegionsResult:
    try:
        boxes = parse_boxes(raw_boxes, services.settings.max_boxes)
    except BoxError as exc:
        raise HTTPException(422, str(exc)) from exc
    searchable = await _searchable(services, scope)
    try:
        crops = await services.inference.decode_regions(data, boxes)
    except ImageDecodeError as exc:
        raise HTTPException(exc.status, f"image: {exc}") from exc
    except BoxError as exc:
        raise HTTPException(422, str(exc)) from exc
    # Every box in one forward pass, searched in one call.
    search = VerdictSearch(services, options, searchable)
    results = await services.inference.embed_then(crops, search)
    return RegionsResult(
        regions=[
            RegionResult(
                box=box, **ClassifyResult.of(verdict).model_dump(include={"matches", "unknown"})
            )
            for box, verdict in zip(json.loads(raw_boxes), results, strict=True)
        ],
        model=services.shards.model_id,
    )


async def classify(
    services: ServicesDep,
    options: OptionsDep,
    scope: ScopeDep,
    image: Annotated[UploadFile, File()],
    boxes: Annotated[str | None, Form()] = None,
) -> ClassifyResult | RegionsResult:
    payloads = await read_all([image], "image", 1)
    if boxes is not None:
        return await _classify_regions(services, payloads[0], boxes, options, scope)
    return await classify_image(services, payloads[0], options, scope)


async def classify_image(
    services: Services, data: bytes, options: ClassifyOptions, scope: Scope
) -> ClassifyResult:
    """One photo's verdict; faults are HTTPExceptions worded as the contract says."""
    searchable = await _searchable(services, scope)
    try:
        search = VerdictSearch(services, options, searchable)
        verdict = await services.inference.classify_one(data, search)
        return ClassifyResult.of(verdict)
    except ImageDecodeError as exc:
        raise HTTPException(exc.status, f"image: {exc}") from exc


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
    services: ServicesDep,
    options: OptionsDep,
    scope: ScopeDep,
    images: Annotated[list[UploadFile], File()],
) -> BatchClassifyResult:
    payloads = await read_all(images, "images", services.settings.max_images_per_request)
    results = await _classify(services, payloads, "images", options, scope)
    return BatchClassifyResult(results=results, model=services.shards.model_id)
