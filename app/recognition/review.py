"""The review queue's use case: which classifications a person should see, keeping them, and
working through them (confirming one is registration's: app/recognition/registration.py).

`RETAILKLIP_REVIEW`: `off` (the default) keeps nothing; `ambiguous` keeps every answer that is
not `confident` (ambiguous or unknown), and every photo showing a retail barcode that no product
holds (confirming it gives the product that code); `all` keeps every answer. What is kept is
the photo (or, for a `boxes` request, the box's crop) with the top candidates and its codes,
in a queue bounded by count and age (app/catalogue/review_queue.py); shelf photos may show
people, so nothing is kept unless the operator opts in. Keeping runs after the answer is sent
(the route's background task): it never delays a classification.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass
from typing import Literal

import anyio.to_thread
from PIL import Image

from app.catalogue.errors import ReviewItemNotFound
from app.catalogue.products import ProductStore
from app.catalogue.review_queue import QueuedPhoto, ReviewQueue, ReviewRecord
from app.encoder.decode import decode_photo
from app.index.shard_store import ShardStore
from app.recognition.hit_names import HitNames
from app.recognition.hygiene import LookAlike, look_alikes
from app.recognition.regions import Box, pixel_boxes
from app.recognition.search import Verdict

ReviewMode = Literal["off", "ambiguous", "all"]
CANDIDATES = 3  # suggestions kept per item

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhotoNeed:
    sku: str
    uncertain: int  # kept uncertain answers that named it first
    look_alike: LookAlike | None  # its closest other product


@dataclass
class Review:
    mode: ReviewMode
    queue: ReviewQueue
    max_pixels: int
    products: ProductStore
    store: ShardStore
    names: HitNames
    vectors_per_image: int

    def wants(self, verdict: Verdict) -> bool:
        """Also a photo showing a retail code no product holds (with the queue on): confirming
        it names the product the code belongs to."""
        if self.mode == "off":
            return False
        unheld = any(c.gtin is not None and c.sku is None for c in verdict.barcodes)
        return self.mode == "all" or verdict.tier != "confident" or unheld

    def keep(self, data: bytes, verdict: Verdict, box: Box | None = None) -> int | None:
        """Blocking (decode, crop, file and SQL writes): run it off the event loop. A failure
        is logged, never raised: the answer has gone out already."""
        try:
            return self._keep(data, verdict, box)
        except Exception:
            log.exception("keeping a classification for review failed")
            return None

    def _keep(self, data: bytes, verdict: Verdict, box: Box | None) -> int | None:
        if box is not None:
            photo = decode_photo(data, self.max_pixels)
            [rect] = pixel_boxes([box], photo.width, photo.height)
            buffer = io.BytesIO()
            photo.region(rect).save(buffer, format="JPEG", quality=90)
            data = buffer.getvalue()
        top = verdict.matches[0].score if verdict.matches else None
        return self.queue.add(
            QueuedPhoto(
                data=data,
                model_id=verdict.model,
                verdict=verdict.tier,
                top_score=top,
                margin=verdict.margin,
                candidates=[
                    {"sku": h.sku, "name": h.name, "score": h.score}
                    for h in verdict.matches[:CANDIDATES]
                ],
                box=None if box is None else list(box),
                barcodes=[
                    {"text": c.text, "format": c.format, "gtin": c.gtin, "sku": c.sku}
                    for c in verdict.barcodes
                ],
            )
        )

    async def page(self, limit: int, offset: int) -> tuple[list[ReviewRecord], int]:
        """Kept classifications, most uncertain first."""
        return await anyio.to_thread.run_sync(self.queue.page, limit, offset)

    async def photo(self, item_id: int) -> tuple[bytes, str]:
        """An item's photo and its image format (JPEG, PNG, ...); raises ReviewItemNotFound."""
        return await anyio.to_thread.run_sync(self._photo, item_id)

    def _photo(self, item_id: int) -> tuple[bytes, str]:
        data = self.queue.photo(item_id)
        if data is None:
            raise ReviewItemNotFound(item_id)
        return data, Image.open(io.BytesIO(data)).format or "JPEG"  # the header only

    async def reject(self, item_id: int) -> None:
        """Nothing of the item is left behind: its row and its photo go."""
        await anyio.to_thread.run_sync(self.queue.remove, item_id)

    async def purge(self) -> None:
        await anyio.to_thread.run_sync(self.queue.purge)

    async def needs(self, limit: int) -> list[PhotoNeed]:
        """Which products most need a shelf photo: those the kept uncertain answers name first
        most often, each with its closest look-alike; one trip off the event loop."""
        return await anyio.to_thread.run_sync(functools.partial(self._needs, limit))

    def _needs(self, limit: int) -> list[PhotoNeed]:
        counts = self.queue.uncertain_counts()
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        similar = look_alikes(
            self.products,
            self.store,
            self.names,
            [sku for sku, _ in ranked],
            1,
            self.vectors_per_image,
        )
        return [
            PhotoNeed(sku, uncertain, similar[sku][0] if similar[sku] else None)
            for sku, uncertain in ranked
            if sku in similar  # a product deleted since is left out
        ]
