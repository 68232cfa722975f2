"""What one serving process holds of the catalogue and the index, wired as app/main.py wires it,
without an encoder or HTTP: for tests (and benchmarks) that drive several replicas of one
database directly."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.catalogue.products import ImagesRecord, NewImage, ProductRecord, ProductStore
from app.db.changelog import HeadReader
from app.index.shard_store import ShardStore
from app.recognition.hit_names import HitNames, Match
from app.recognition.search import Verdict, name_hits, search_depth
from app.runtime.index_sync import IndexSync
from app.runtime.inference import RawHits
from app.storage.blobs import BlobStore


def classify_vectors(
    store: ShardStore,
    names: HitNames,
    queries: np.ndarray,
    top_k: int,
    threshold: float,
    head: Future[int] | None = None,
) -> list[Verdict]:
    """What the classify pipeline does after the forward pass, in one call: the search, then
    the naming (with SQL, as on the thread pool)."""
    k = search_depth(top_k, 1)
    scores, ids = store.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    hits = [RawHits(s, i, q) for s, i, q in zip(scores, ids, queries, strict=True)]
    lookup = functools.partial(names.matches_for, head=head)
    return name_hits(hits, lookup, top_k, threshold, store.model_id)


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
    ) -> ProductRecord:
        return self.products.create_product(sku, name, metadata, images, catalogues)

    def add_images(self, sku: str, images: list[NewImage]) -> ImagesRecord:
        return self.products.add_images(sku, images)

    def delete_product(self, sku: str) -> None:
        self.products.delete_product(sku)

    def delete_image(self, sku: str, image_id: int) -> None:
        self.products.delete_image(sku, image_id)

    def get_product(self, sku: str) -> ProductRecord:
        return self.products.get_product(sku)

    def matches_for(
        self, image_ids: Iterable[int], head: Future[int] | None = None
    ) -> dict[int, Match]:
        return self.names.matches_for(image_ids, head)
