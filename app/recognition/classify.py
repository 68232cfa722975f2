"""Classification: photo -> decode -> embed -> search -> name the hits -> verdict.

Every classify route (app/api/classify.py) parses its form into `ClassifyOptions` and a `Scope`,
makes exactly one call here and turns the `Verdict`s into JSON. Nothing here knows HTTP:
refusals are exceptions carrying data, which app/api/errors.py words and numbers.

    prepare   index complete? (else IndexIncomplete); a read of the change log's head starts
              (its own thread); scope -> allowed image ids (thread pool: SQL, cached per scope)
    decode    the decode pool (or, for a lone photo with the model idle, the model thread):
              the photo, its boxes' regions, or each photo of a batch
    embed     the model thread: one batched forward pass for whatever is queued
    search    the model thread, right after the forward pass: one FAISS search per group of
              requests sharing a scope; raw hits (scores, image ids) come back
    name      here: image ids -> products, from memory when the head read shows the shards
              current (no I/O, on the event loop), else one SQL query on the thread pool
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import Future
from dataclasses import dataclass

import anyio.to_thread
import numpy as np

from app.encoder.decode import ImageDecodeError
from app.recognition.barcode_answers import BarcodeAnswers
from app.recognition.hit_names import HitNames, NotRemembered
from app.recognition.regions import Box, region_pixels
from app.recognition.scopes import Scope, ScopeResolver
from app.recognition.search import Verdict, name_hits, search_depth
from app.recognition.tiers import Tiers
from app.recognition.uploads import UploadRejected, first_rejected
from app.runtime.code_reading import CodeReading, SeenCode
from app.runtime.index_sync import IndexSync
from app.runtime.inference import Inference, RawHits, SearchSpec


class IndexIncomplete(Exception):
    """A reindex to the served model is still running: never answer from a half-built index."""

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self.model_id = model_id


@dataclass(frozen=True)
class ClassifyOptions:
    top_k: int
    threshold: float  # below it the best match is "unknown"


@dataclass(frozen=True)
class Prepared:
    spec: SearchSpec
    # The change log's head, read from the request's start (beside the forward pass): lets
    # the naming trust remembered products (app/recognition/hit_names.py).
    head: Future[int]


@dataclass
class Classifier:
    index: IndexSync
    names: HitNames
    scopes: ScopeResolver
    inference: Inference
    tiers: Tiers | None  # the model's calibrated verdict tiers, with the settings' overrides
    # Barcodes read beside each classification (None: RETAILKLIP_BARCODES off).
    codes: CodeReading | None = None
    answers: BarcodeAnswers | None = None

    @property
    def model_id(self) -> str:
        return self.index.model_id

    async def classify(self, photo: bytes, options: ClassifyOptions, scope: Scope) -> Verdict:
        """One photo; raises IndexIncomplete, UnknownCatalogue, UnknownMetadataKey,
        UploadRejected."""
        prepared = await self.prepare(options, scope)
        reading = self.read_codes(photo)
        try:
            hits = await self.inference.photo_hits(photo, prepared.spec)
        except ImageDecodeError as exc:
            raise UploadRejected("image", None, exc) from exc
        verdicts = await self.name([hits], prepared, options)
        [verdict] = await self.with_codes(verdicts, [hits], reading, prepared, options)
        return verdict

    async def classify_regions(
        self, photo: bytes, boxes: list[Box], options: ClassifyOptions, scope: Scope
    ) -> list[Verdict]:
        """One verdict per box of one photo; raises as `classify` does, and BoxOutside."""
        prepared = await self.prepare(options, scope)
        reading = self.read_codes(photo)
        work = functools.partial(region_pixels, self.inference, photo, boxes)
        try:
            hits = await self.inference.decode_and_search(work, prepared.spec)
        except ImageDecodeError as exc:
            raise UploadRejected("image", None, exc) from exc
        verdicts = await self.name(hits, prepared, options)
        return await self.with_codes(verdicts, hits, reading, prepared, options, boxes)

    async def classify_batch(
        self, photos: list[bytes], options: ClassifyOptions, scope: Scope
    ) -> list[Verdict]:
        """One verdict per photo; raises as `classify` does (`images[i]` for a photo)."""
        prepared = await self.prepare(options, scope)
        readings = [self.read_codes(data) for data in photos]
        inference = self.inference
        found = await asyncio.gather(
            *(
                inference.decode_and_search(
                    functools.partial(_photo_pixels, inference, data), prepared.spec
                )
                for data in photos
            ),
            return_exceptions=True,
        )
        first_rejected("images", list(found))
        hits = [one for result in found for one in result]  # type: ignore[union-attr]
        verdicts = await self.name(hits, prepared, options)
        return [
            (await self.with_codes([verdict], [hit], reading, prepared, options))[0]
            for verdict, hit, reading in zip(verdicts, hits, readings, strict=True)
        ]

    def read_codes(self, photo: bytes) -> asyncio.Task[list[SeenCode]] | None:
        """The photo's barcodes, read in the background while it is classified."""
        return None if self.codes is None else self.codes.start(photo)

    async def with_codes(
        self,
        verdicts: list[Verdict],
        hits: list[RawHits],
        reading: asyncio.Task[list[SeenCode]] | None,
        prepared: Prepared,
        options: ClassifyOptions,
        boxes: list[Box] | None = None,
    ) -> list[Verdict]:
        """The verdicts with the codes read (app/recognition/barcode_answers.py)."""
        if reading is None or self.answers is None:
            return verdicts
        codes = await reading
        return await self.answers.settle(
            verdicts,
            hits,
            codes,
            prepared.spec.allowed,
            options.threshold,
            options.top_k,
            boxes,
        )

    async def prepare(self, options: ClassifyOptions, scope: Scope) -> Prepared:
        """What every mode checks before a forward pass (a bad scope is cheap to refuse)."""
        if not self.index.complete:
            raise IndexIncomplete(self.model_id)
        head = self.names.head_after(time.monotonic())
        allowed: np.ndarray | None = None
        if not scope.unrestricted:
            # SQL (or the scope cache's stamp query): the framework's thread pool.
            allowed = await anyio.to_thread.run_sync(self.scopes.allowed, scope)
        k = search_depth(options.top_k, self.inference.vectors_per_image)
        return Prepared(SearchSpec(k, allowed), head)

    async def name(
        self, hits: list[RawHits], prepared: Prepared, options: ClassifyOptions
    ) -> list[Verdict]:
        """Hits -> verdicts: from memory when it can answer (no I/O), else on the thread pool."""
        name = functools.partial(
            name_hits,
            hits,
            top_k=options.top_k,
            threshold=options.threshold,
            model_id=self.model_id,
            tiers=self.tiers,
        )
        try:
            return name(functools.partial(self.names.remembered, head=prepared.head))
        except NotRemembered:
            lookup = functools.partial(self.names.matches_for, head=prepared.head)
            return await anyio.to_thread.run_sync(name, lookup)


def _photo_pixels(inference: Inference, data: bytes) -> list[np.ndarray]:
    """Blocking (the decode pool): a whole photo's model pixels."""
    return [inference.pixels(inference.photo(data).image)]
