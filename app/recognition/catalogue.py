"""The catalogue as its routes use it: products and their reference images read, deleted and
grouped into catalogues, and the products that look alike. Every call leaves the event loop
for the repository (SQL, blob files, image decoding) once."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio.to_thread
from PIL import Image

from app.catalogue.errors import ProductNotFound
from app.catalogue.product_sets import ProductSets, StoredImage
from app.catalogue.products import ProductRecord, ProductStore
from app.encoder.decode import decode_photo
from app.index.shard_store import ShardStore
from app.recognition.hit_names import HitNames
from app.recognition.hygiene import LookAlike, look_alikes

T = TypeVar("T")


@dataclass
class Catalogue:
    products: ProductStore
    sets: ProductSets
    store: ShardStore
    names: HitNames
    vectors_per_image: int
    max_pixels: int

    async def page(self, limit: int, offset: int) -> tuple[list[ProductRecord], int]:
        """Products oldest first, and how many there are."""
        return await anyio.to_thread.run_sync(self.products.list_products, limit, offset)

    async def find_by_barcode(self, gtin: str) -> ProductRecord | None:
        """The product holding the code (GTIN-14), if any."""
        return await anyio.to_thread.run_sync(self.products.find_by_barcode, gtin)

    async def set_barcodes(
        self,
        sku: str,
        added: list[str],
        removed: list[str],
        answer: Callable[[ProductRecord], T],
    ) -> T:
        """Raises ProductNotFound, BarcodeTaken, BarcodeNotFound."""
        return await anyio.to_thread.run_sync(
            functools.partial(self.products.set_barcodes, sku, added, removed, answer=answer)
        )

    async def get(self, sku: str) -> ProductRecord:
        """Raises ProductNotFound."""
        return await anyio.to_thread.run_sync(self.products.get_product, sku)

    async def delete(self, sku: str) -> None:
        """Its vectors leave search at once; raises ProductNotFound."""
        await anyio.to_thread.run_sync(self.products.delete_product, sku)

    async def delete_image(self, sku: str, image_id: int) -> None:
        """Raises ImageNotFound."""
        await anyio.to_thread.run_sync(self.products.delete_image, sku, image_id)

    async def set_catalogues(
        self, sku: str, names: list[str], answer: Callable[[ProductRecord], T]
    ) -> T:
        """Replace a product's catalogues; `answer` runs before the commit. Raises
        ProductNotFound."""
        return await anyio.to_thread.run_sync(
            functools.partial(self.sets.set_catalogues, sku, names, answer=answer)
        )

    async def catalogues(self) -> list[tuple[str, int]]:
        return await anyio.to_thread.run_sync(self.sets.catalogues)

    async def image(self, sku: str, image_id: int) -> StoredImage:
        """Raises ImageNotFound."""
        return await anyio.to_thread.run_sync(self.sets.image, sku, image_id)

    async def image_bytes(self, stored: StoredImage, size: int | None) -> bytes:
        """The stored bytes, or (`size`) a JPEG whose longer side is at most `size`."""
        return await anyio.to_thread.run_sync(self._image_bytes, stored, size)

    def _image_bytes(self, stored: StoredImage, size: int | None) -> bytes:
        data = self.products.blobs.get(stored.blob_key)
        if size is None:
            return data
        # Decoded at the smallest scale that still holds `size` pixels across, upright.
        image = decode_photo(data, self.max_pixels, lambda w, h: max(w, h) // size).image
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()

    async def similar(self, sku: str, limit: int) -> list[LookAlike]:
        """Other products whose references score highest against this one's; raises
        ProductNotFound."""
        found = await anyio.to_thread.run_sync(
            functools.partial(
                look_alikes,
                self.products,
                self.store,
                self.names,
                [sku],
                limit,
                self.vectors_per_image,
            )
        )
        if sku not in found:
            raise ProductNotFound(sku)
        return found[sku]
