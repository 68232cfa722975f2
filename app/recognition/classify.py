"""The classification pipeline: options -> scope -> decode -> embed -> search -> name the hits.

Every classify route (app/api/classify.py) parses its form into `ClassifyOptions` and a `Scope`
through FastAPI dependencies, then makes exactly one call here and turns the `Verdict`s into
JSON. Nothing here knows HTTP: refusals are the exceptions below, which the route maps to the
contract's status codes. The modes, and where each step runs:

    prepare: index complete? (else IndexIncomplete); a read of the log head starts (own thread);
             scope -> allowed image ids (thread pool: SQL, cached per scope)
      |
      +-- one photo, model idle ----> model thread: decode, forward, search, name (one hop)
      +-- one photo, model busy ----> decode pool -> queue -> batched forward -> search, name
      +-- one photo with boxes -----> decode pool: decode, crop each box -> queue -> one
      |                               forward for every crop -> search, name
      +-- batch of photos ----------> decode pool, each photo -> queue -> batched forward
      |                               -> search, name
      v
    search and naming run on the model thread right after the forward pass (`VerdictSearch`),
    once per group of requests in a batch that share options, scope and head read: one FAISS
    call (`ShardStore.search`) and one naming (`HitNames.matches_for`: memory when the head
    read shows the shards current, one SQL query otherwise). Nothing blocking runs on the
    event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass

import anyio.to_thread
import numpy as np

from app.encoder.boxes import Box
from app.encoder.decode import ImageDecodeError
from app.encoder.tiers import Tiers
from app.index.shard_store import ShardStore
from app.recognition.hit_names import HitNames
from app.recognition.scopes import Scope, ScopeResolver
from app.recognition.search import Verdict, classify_vectors
from app.runtime.index_sync import IndexSync
from app.runtime.inference import Inference


class IndexIncomplete(Exception):
    """A reindex to the served model is still running: never answer from a half-built index."""


class ImageRejected(Exception):
    """Upload `position` of a batch did not decode."""

    def __init__(self, position: int, error: ImageDecodeError) -> None:
        super().__init__(str(error))
        self.position = position
        self.error = error


@dataclass(frozen=True)
class ClassifyOptions:
    top_k: int
    threshold: float  # below it the best match is "unknown"


@dataclass(frozen=True)
class Searchable:
    allowed: np.ndarray | None  # image ids the scope allows (None: all)
    # The change log's head, read from the request's start (beside the forward pass): lets
    # the naming skip SQL when the shards had applied it (app/recognition/hit_names.py).
    head: Future[int]


@dataclass(frozen=True)
class VerdictSearch:
    """Search and naming for query vectors, run on the model thread right after their forward
    pass (app/runtime/inference.py `AfterForward`)."""

    store: ShardStore
    names: HitNames
    options: ClassifyOptions
    searchable: Searchable
    vectors_per_image: int
    tiers: Tiers | None

    @property
    def key(self) -> Hashable:
        # The scope cache hands out one array per scope, and head reads are shared: identity
        # says "the same" here.
        return (self.options, id(self.searchable.allowed), id(self.searchable.head))

    def __call__(self, vectors: np.ndarray) -> list[Verdict]:
        return classify_vectors(
            self.store,
            self.names,
            np.asarray(vectors),
            self.options.top_k,
            self.options.threshold,
            self.vectors_per_image,
            self.searchable.allowed,
            self.searchable.head,
            self.tiers,
        )


@dataclass
class Classifier:
    index: IndexSync
    names: HitNames
    scopes: ScopeResolver
    inference: Inference
    tiers: Tiers | None  # the model's calibrated verdict tiers, with the settings' overrides

    @property
    def model_id(self) -> str:
        return self.index.model_id

    async def classify(self, data: bytes, options: ClassifyOptions, scope: Scope) -> Verdict:
        """One photo; raises IndexIncomplete, ScopeError, ImageDecodeError."""
        search = await self._search_for(options, scope)
        return await self.inference.classify_one(data, search)

    async def classify_regions(
        self, data: bytes, boxes: list[Box], options: ClassifyOptions, scope: Scope
    ) -> list[Verdict]:
        """One verdict per box of one photo; raises as `classify` does, and BoxError for a box
        outside the photo."""
        search = await self._search_for(options, scope)
        crops = await self.inference.decode_regions(data, boxes)
        return await self.inference.embed_then(crops, search)

    async def classify_batch(
        self, payloads: list[bytes], options: ClassifyOptions, scope: Scope
    ) -> list[Verdict]:
        """One verdict per photo; raises as `classify` does, ImageRejected for a photo."""
        search = await self._search_for(options, scope)
        results = await asyncio.gather(
            *(self.inference.decode(data) for data in payloads), return_exceptions=True
        )
        pixels = []
        for position, result in enumerate(results):
            if isinstance(result, ImageDecodeError):
                raise ImageRejected(position, result)
            if isinstance(result, BaseException):
                raise result
            pixels.append(result.pixels)
        return await self.inference.embed_then(pixels, search)

    async def _search_for(self, options: ClassifyOptions, scope: Scope) -> VerdictSearch:
        """What every mode checks before a forward pass (a bad scope is cheap to refuse)."""
        if not self.index.complete:
            raise IndexIncomplete(self.model_id)
        head = self.names.head_after(time.monotonic())
        allowed = None
        if not scope.unrestricted:
            # SQL (or the scope cache's stamp query): the framework's thread pool.
            allowed = await anyio.to_thread.run_sync(self.scopes.allowed, scope)
        return VerdictSearch(
            self.index.store,
            self.names,
            options,
            Searchable(allowed, head),
            self.inference.vectors_per_image,
            self.tiers,
        )
