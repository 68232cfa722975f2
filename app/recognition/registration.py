"""Registering references: a new product with its photos, more photos of a product, and a
review item confirmed as a product's photo. All three take one path:

    decode every upload (all or nothing: one bad upload refuses the request)
      -> embed each with its degraded views (batched with whatever else is in flight)
      -> near-duplicate warnings: other products' references the uploads look like,
         searched before the write, so an upload never matches itself
      -> the write, in one transaction, whose `answer` (the caller's response, built and
         encoded) runs before the commit: a client never gets an error for a write that was
         kept, nor a success for one that was not

Returns whatever `answer` made of the plain records (app/catalogue/products.py) and warnings.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
import numpy as np

from app.catalogue.errors import ReviewItemNotFound
from app.catalogue.products import ImagesRecord, NewImage, ProductRecord, ProductStore
from app.catalogue.review_queue import ReviewQueue
from app.index.shard_store import ShardStore
from app.recognition.hit_names import HitNames
from app.recognition.hygiene import NearDuplicate, near_duplicates
from app.recognition.uploads import first_rejected
from app.runtime.inference import DecodedImage, Inference

T = TypeVar("T")


@dataclass(frozen=True)
class NewProduct:
    sku: str
    name: str
    metadata: dict[str, Any]
    catalogues: list[str]
    barcodes: list[str] = field(default_factory=list)  # GTIN-14


@dataclass
class Registrar:
    inference: Inference
    products: ProductStore
    store: ShardStore
    names: HitNames
    queue: ReviewQueue
    duplicate_threshold: float  # cosine from which an upload is reported as a look-alike

    async def create(
        self,
        product: NewProduct,
        photos: list[bytes],
        answer: Callable[[ProductRecord, list[NearDuplicate]], T],
    ) -> T:
        """Raises UploadRejected, ProductExists."""
        uploads = await self._embedded(photos, "images")
        warnings = await self._near_duplicates(product.sku, uploads)
        return await anyio.to_thread.run_sync(
            functools.partial(
                self.products.create_product,
                product.sku,
                product.name,
                product.metadata,
                uploads,
                product.catalogues,
                answer=lambda record: answer(record, warnings),
                barcodes=product.barcodes,
            )
        )

    async def add_images(
        self,
        sku: str,
        photos: list[bytes],
        answer: Callable[[ImagesRecord, list[NearDuplicate]], T],
    ) -> T:
        """Raises UploadRejected, ProductNotFound, ConcurrentWrite."""
        uploads = await self._embedded(photos, "images")
        warnings = await self._near_duplicates(sku, uploads)
        return await anyio.to_thread.run_sync(
            functools.partial(
                self.products.add_images,
                sku,
                uploads,
                answer=lambda record: answer(record, warnings),
            )
        )

    async def confirm(
        self,
        item_id: int,
        sku: str,
        answer: Callable[[ImagesRecord, list[NearDuplicate]], T],
    ) -> T:
        """A review item's photo becomes a reference of `sku`, and the item leaves the queue, in
        one transaction: of two confirmations of one item only one writes anything. Raises
        ReviewItemNotFound (also for the loser of such a race), and as `add_images`. The
        retail codes read in the photo that no product held are attached to `sku` in the same
        transaction (BarcodeTaken if another product has taken one since)."""
        kept = await anyio.to_thread.run_sync(self.queue.kept, item_id)
        if kept is None:
            raise ReviewItemNotFound(item_id)
        photo, record = kept
        uploads = await self._embedded([photo], "photo")
        warnings = await self._near_duplicates(sku, uploads)
        claimed: list[str] = []
        result = await anyio.to_thread.run_sync(
            functools.partial(
                self.products.add_images,
                sku,
                uploads,
                answer=lambda record: answer(record, warnings),
                first=lambda session: claimed.append(self.queue.claim(session, item_id)),
                barcodes=record.unheld_gtins,
            )
        )
        await anyio.to_thread.run_sync(self.queue.forget_photos, claimed)
        return result

    async def _embedded(self, photos: list[bytes], field: str) -> list[NewImage]:
        """Every upload decoded and embedded with its views; raises UploadRejected."""
        inference = self.inference
        results = await asyncio.gather(
            *(
                inference.decode_and_embed(
                    functools.partial(inference.decode, data, True),
                    lambda d: [d.pixels, *d.view_pixels],
                )
                for data in photos
            ),
            return_exceptions=True,
        )
        first_rejected(field, list(results))
        uploads = []
        for result in results:
            decoded, vectors = result  # type: ignore[misc]  # the errors were raised above
            uploads.append(self._new_image(decoded, vectors))
        return uploads

    def _new_image(self, decoded: DecodedImage, vectors: np.ndarray) -> NewImage:
        codes = self.inference.view_codes if decoded.view_pixels else ()
        return NewImage.embedded(decoded, vectors[0], vectors[1:], codes)

    async def _near_duplicates(self, sku: str, uploads: list[NewImage]) -> list[NearDuplicate]:
        """Other products' references the uploads look like (SQL names them: a thread)."""
        if not uploads:
            return []
        return await anyio.to_thread.run_sync(
            functools.partial(
                near_duplicates,
                self.store,
                self.names,
                sku,
                np.stack([u.embedding for u in uploads]),
                self.duplicate_threshold,
                self.inference.vectors_per_image,
            )
        )
