"""Classification routes."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from app.api.deps import ServicesDep, require_api_key
from app.api.schemas import BatchClassifyResult, ClassifyResult
from app.api.uploads import decode_all, read_all
from app.search import classify_vectors
from app.services import Services

router = APIRouter(tags=["classify"], dependencies=[Depends(require_api_key)])


def _options(services: Services, top_k: int | None, min_score: float | None) -> tuple[int, float]:
    settings = services.settings
    top_k = settings.default_top_k if top_k is None else top_k
    if not 1 <= top_k <= settings.max_top_k:
        raise HTTPException(422, f"top_k must be between 1 and {settings.max_top_k}")
    threshold = settings.unknown_threshold if min_score is None else min_score
    if not -1.0 <= threshold <= 1.0:
        raise HTTPException(422, "min_score must be between -1 and 1")
    return top_k, threshold


async def _classify(
    services: Services, blobs: list[bytes], field: str, top_k: int, threshold: float
) -> list[ClassifyResult]:
    decoded = await decode_all(services, blobs, field)
    vectors = await services.inference.embed([d.tensor for d in decoded])
    return await run_in_threadpool(
        classify_vectors,
        services.shards,
        services.catalog,
        np.asarray(vectors),
        top_k,
        threshold,
    )


# top_k / min_score are accepted as form fields or as query parameters (form wins).
@router.post("/classify")
async def classify(
    services: ServicesDep,
    image: Annotated[UploadFile, File()],
    top_k: Annotated[int | None, Form()] = None,
    min_score: Annotated[float | None, Form()] = None,
    top_k_query: Annotated[int | None, Query(alias="top_k")] = None,
    min_score_query: Annotated[float | None, Query(alias="min_score")] = None,
) -> ClassifyResult:
    k, threshold = _options(
        services,
        top_k if top_k is not None else top_k_query,
        min_score if min_score is not None else min_score_query,
    )
    blobs = await read_all([image], "image", 1)
    return (await _classify(services, blobs, "image", k, threshold))[0]


@router.post("/classify/batch")
async def classify_batch(
    services: ServicesDep,
    images: Annotated[list[UploadFile], File()],
    top_k: Annotated[int | None, Form()] = None,
    min_score: Annotated[float | None, Form()] = None,
    top_k_query: Annotated[int | None, Query(alias="top_k")] = None,
    min_score_query: Annotated[float | None, Query(alias="min_score")] = None,
) -> BatchClassifyResult:
    k, threshold = _options(
        services,
        top_k if top_k is not None else top_k_query,
        min_score if min_score is not None else min_score_query,
    )
    blobs = await read_all(images, "images", services.settings.max_images_per_request)
    results = await _classify(services, blobs, "images", k, threshold)
    return BatchClassifyResult(results=results, model=services.shards.model_id)
