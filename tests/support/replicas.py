"""What one serving process holds of the catalogue and the index, wired as app/main.py wires it,
without an encoder or HTTP: for tests (and benchmarks) that drive several replicas of one
database directly."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.catalogue.products import NewImage, ProductStore
from app.db.changelog import HeadReader
from app.db.tables import Product
from app.recognition.hit_names import HitNames, Match
from app.runtime.index_sync import IndexSync
from app.storage.blobs import BlobStore


@dataclass
class Replica:
    products: ProductStore
    shards: IndexSync
    names: HitNames

    @classmethod
    def of(
        cls,
        session_factory: Callable[[], Session],
        blobs: BlobStore,
        shards: IndexSync,
        shard_capacity: int,
    ) -> Replica:
        products = ProductStore(
            session_factory, blobs, shards.model_id, shard_capacity, committed=shards.follower
        )
        with session_factory() as session:
            engine = session.get_bind()
        assert isinstance(engine, Engine)
        head = HeadReader(engine, shards.model_id)
        return cls(products, shards, HitNames(shards.store, products, head, head.close))

    @property
    def session_factory(self) -> Callable[[], Session]:
        return self.products.session_factory

    @property
    def blobs(self) -> BlobStore:
        return self.products.blobs

    @property
    def model_id(self) -> str:
        return self.products.model_id

    # The repository's calls, as a test makes them on "this replica".
    def create_product(
        self,
        sku: str,
        name: str,
        metadata: dict[str, Any],
        images: list[NewImage],
        catalogues: Sequence[str] = (),
    ) -> Product:
        return self.products.create_product(sku, name, metadata, images, catalogues)

    def add_images(self, sku: str, images: list[NewImage]) -> tuple[list[int], int]:
        return self.products.add_images(sku, images)

    def delete_product(self, sku: str) -> None:
        self.products.delete_product(sku)

    def delete_image(self, sku: str, image_id: int) -> None:
        self.products.delete_image(sku, image_id)

    def get_product(self, sku: str) -> Product:
        return self.products.get_product(sku)

    def matches_for(
        self, image_ids: Iterable[int], head: Future[int] | None = None
    ) -> dict[int, Match]:
        return self.names.matches_for(image_ids, head)
