"""Reading, decoding and embedding uploaded images, with the contract's 4xx errors."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

import numpy as np
from fastapi import HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from app.api.schemas import DuplicateWarning, ImagesAdded
from app.catalogue.products import NewImage, NotFound, WriteConflict
from app.encoder.decode import ImageDecodeError
from app.recognition.hygiene import near_duplicates
from app.runtime.inference import DecodedImage
from app.services import Services


async def read_all(files: list[UploadFile], field: str, limit: int) -> list[bytes]:
    if not files:
        raise HTTPException(422, f"{field}: at least one image is required")
    if len(files) > limit:
        raise HTTPException(422, f"{field}: at most {limit} images per request")
    return [await f.read() for f in files]


async def decode_all(
    services: Services, payloads: list[bytes], field: str, with_views: bool = False
) -> list[DecodedImage]:
    results = await asyncio.gather(
        *(services.inference.decode(b, with_views) for b in payloads), return_exceptions=True
    )
    decoded: list[DecodedImage] = []
    for i, result in enumerate(results):
        if isinstance(result, ImageDecodeError):
            label = field if len(payloads) == 1 and field == "image" else f"{field}[{i}]"
            raise HTTPException(result.status, f"{label}: {result}")
        if isinstance(result, BaseException):
            raise result
        decoded.append(result)
    return decoded


async def embed_uploads(services: Services, payloads: list[bytes], field: str) -> list[NewImage]:
    """All-or-nothing: every upload must decode before anything is embedded or written."""
    decoded = await decode_all(services, payloads, field, with_views=True)
    # Each image and its degraded views go through one micro-batched call.
    vectors = await services.inference.embed(
        [t for d in decoded for t in (d.pixels, *d.view_pixels)]
    )
    uploads, start = [], 0
    for d in decoded:
        own, views = vectors[start], vectors[start + 1 : start + 1 + len(d.view_pixels)]
        start += 1 + len(d.view_pixels)
        codes = services.inference.view_codes if d.view_pixels else ()
        uploads.append(NewImage.embedded(d, own, views, codes))
    return uploads


async def duplicate_warnings(
    services: Services, sku: str, uploads: list[NewImage]
) -> list[DuplicateWarning]:
    """Searched before the write, so the uploads cannot match themselves."""
    if not uploads:
        return []
    found = await run_in_threadpool(
        near_duplicates,
        services.index.store,
        services.names,
        sku,
        np.stack([u.embedding for u in uploads]),
        services.settings.duplicate_threshold,
        services.inference.vectors_per_image,
    )
    return [DuplicateWarning(**asdict(d)) for d in found]


async def add_references(
    services: Services, sku: str, payloads: list[bytes], field: str
) -> ImagesAdded:
    """New reference images of a product: POST /products/{sku}/images, and a confirmed
    review item, take this one path (decode, embed, near-duplicate warnings, write)."""
    uploads = await embed_uploads(services, payloads, field)
    warnings = await duplicate_warnings(services, sku, uploads)
    try:
        ids, added = await run_in_threadpool(services.products.add_images, sku, uploads)
    except NotFound as exc:
        raise HTTPException(404, f"product not found: {sku}") from exc
    except WriteConflict as exc:
        raise HTTPException(409, f"concurrent write to product {sku}; retry") from exc
    return ImagesAdded(sku=sku, image_ids=ids, added=added, warnings=warnings)
