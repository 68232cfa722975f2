"""Off-loop decoding and micro-batched forward passes, each followed by its index search.

Two places do the heavy work, and neither runs on the event loop:

- the **decode pool** (4 threads) turns upload bytes into preprocessed pixels, within the
  process-wide pixel budget (app/encoder/decode.py);
- the **model thread** (one) runs every forward pass and, right after it, the FAISS search of
  the vectors that asked for one (`SearchSpec`): one search per group of requests in the batch
  that share it. It does no I/O: what comes back is raw hits (scores and image ids), which the
  use case names (app/recognition/classify.py).

Requests that queue up while a forward pass runs share the next one (up to `max_batch` images).
The batcher waits for more (at most `batch_wait_ms`) only while uploads are on their way: decoded
or being decoded, not yet queued. A request that arrives alone with the model idle is decoded,
embedded and searched in one call on the model thread: one hop instead of two, no batching delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from app.encoder.decode import DecodeBudget, DecodedPhoto, Reduction, decode_photo
from app.encoder.loading import ServingEncoder
from app.encoder.preprocess import eval_pixels, whole_photo
from app.encoder.views import degraded_views, view_code
from app.index.shard_store import ShardStore
from app.storage.blobs import sha256_hex
from app.storage.uploaded import UploadedImage

T = TypeVar("T")


@dataclass(frozen=True)
class DecodedImage(UploadedImage):
    pixels: np.ndarray  # preprocessed, (3, size, size) float32
    view_pixels: tuple[np.ndarray, ...] = ()  # degraded views, for references only


@dataclass(frozen=True, eq=False)
class SearchSpec:
    """What a classification asks of the index after its forward pass: `k` nearest image ids
    among `allowed` (None: all). Requests sharing one spec share one search; the scope cache
    hands out one array per scope, so identity means "the same" here."""

    k: int
    allowed: np.ndarray | None

    @property
    def key(self) -> Hashable:
        return (self.k, id(self.allowed))


@dataclass(frozen=True)
class RawHits:
    """One query's search result: image ids best first (a degraded view's hit as its image,
    so an id may repeat; -1 past the last hit) and their cosine scores."""

    scores: np.ndarray  # (k,) float32
    image_ids: np.ndarray  # (k,) int64
    vector: np.ndarray  # the query's embedding, (dim,): for a search of its own later


@dataclass
class _Job:
    pixels: list[np.ndarray]
    future: asyncio.Future[Any]  # the vectors, or one RawHits per row with `search`
    search: SearchSpec | None = None
    work: Callable[[], Any] | None = None  # another model's pass (the detector): runs alone


class Inference:
    def __init__(
        self,
        encoder: ServingEncoder,
        store: ShardStore,
        max_pixels: int,
        max_batch: int,
        batch_wait_ms: float,
        on_batch: Callable[[int], None] = lambda size: None,
        reference_views: tuple[str, ...] = (),
        on_stage: Callable[[str, float], None] = lambda stage, seconds: None,
        decode_budget: DecodeBudget | None = None,
    ) -> None:
        self.encoder = encoder
        self.store = store
        self.reference_views = reference_views
        self.view_codes = tuple(view_code(name) for name in reference_views)
        # Vectors each reference image puts into the index: itself and its views.
        self.vectors_per_image = 1 + len(self.view_codes)
        self.max_pixels = max_pixels
        # Decoded pixels in flight across every upload: bounds what decoding can take.
        self.decode_budget = decode_budget or DecodeBudget(2 * max_pixels)
        self.whole_photo = whole_photo(encoder.preprocess)
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1000
        self.on_batch = on_batch
        # Seconds per stage (app/runtime/metrics.py STAGES: decode, forward, search).
        self.on_stage = on_stage
        self.decode_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="decode")
        self.model_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._next: _Job | None = None  # a job `_collect` took but that must run alone, next
        self.worker: asyncio.Task[None] | None = None
        # Uploads on their way to the queue (being decoded, or decoded and about to be queued):
        # the one reason the batcher waits. Event-loop state only, like `busy`.
        self.coming = 0
        self.busy = 0  # calls submitted to the model thread and not finished
        self.arrivals = asyncio.Event()  # set when a job is queued or an upload drops out

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.model_pool.shutdown(wait=True)

    # ---- decoding (the decode pool) ------------------------------------------------------------
    def photo(self, data: bytes, reduction: Reduction | None = None) -> DecodedPhoto:
        """Blocking: decode one upload (at the whole-photo scale unless told), within the budget;
        raises ImageDecodeError."""
        return decode_photo(
            data, self.max_pixels, reduction or self.whole_photo, self.decode_budget
        )

    def pixels(self, image: Image.Image) -> np.ndarray:
        """Blocking: the model's preprocessed pixels of an image."""
        return eval_pixels(image, self.encoder.preprocess)

    def decode(self, data: bytes, with_views: bool = False) -> DecodedImage:
        """Blocking: one upload as the catalogue stores it, with its pixels and (`with_views`:
        a reference being registered) its degraded views' pixels."""
        photo = self.photo(data)
        views = degraded_views(photo.image, self.reference_views) if with_views else []
        return DecodedImage(
            data,
            sha256_hex(data),
            photo.image_format,
            photo.width,
            photo.height,
            self.pixels(photo.image),
            tuple(self.pixels(view) for view in views),
        )

    # ---- to the model thread ----------------------------------------------------------------
    async def embed(self, pixels: list[np.ndarray]) -> np.ndarray:
        """The unit embeddings of these pixels, (n, dim), from the next batched forward pass."""
        vectors: np.ndarray = await self._queued(pixels, None)
        return vectors

    async def search(self, pixels: list[np.ndarray], search: SearchSpec) -> list[RawHits]:
        """One `RawHits` per row of pixels: the next batched forward pass, then the search."""
        hits: list[RawHits] = await self._queued(pixels, search)
        return hits

    async def decode_and_embed(
        self, work: Callable[[], T], rows: Callable[[T], list[np.ndarray]]
    ) -> tuple[T, np.ndarray]:
        """`work` (decoding) on the decode pool, then the forward pass of `rows(its result)`."""
        made = await self._decoding(work)
        vectors: np.ndarray = await self._queued(rows(made), None, decoded=True)
        return made, vectors

    async def decode_and_search(
        self, work: Callable[[], list[np.ndarray]], search: SearchSpec
    ) -> list[RawHits]:
        """`work` (decoding to pixels) on the decode pool, then forward pass and search."""
        pixels = await self._decoding(work)
        hits: list[RawHits] = await self._queued(pixels, search, decoded=True)
        return hits

    async def off_loop(self, work: Callable[[], T]) -> T:
        """`work` on the decode pool (decoding a photo for another model than the encoder)."""
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, work)

    async def alone_on_model_thread(self, work: Callable[[], T]) -> T:
        """`work` (another model's forward pass: the detector) on the model thread, in queue
        order and batched with nothing: it never runs beside an encoder pass."""
        job = _Job([], asyncio.get_running_loop().create_future(), work=work)
        self.queue.put_nowait(job)
        self.arrivals.set()
        result: T = await job.future
        return result

    async def _decoding(self, work: Callable[[], T]) -> T:
        """`work` on the decode pool, counted as on its way to the model: until `_queued`
        takes its pixels, or it fails."""
        self.coming += 1
        begin = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.decode_pool, work)
        except BaseException:
            self.coming -= 1
            self.arrivals.set()
            raise
        finally:
            self.on_stage("decode", time.perf_counter() - begin)

    def _queued(
        self, pixels: list[np.ndarray], search: SearchSpec | None, decoded: bool = False
    ) -> asyncio.Future[Any]:
        job = _Job(pixels, asyncio.get_running_loop().create_future(), search)
        self.queue.put_nowait(job)
        if decoded:  # no await since `_decoding` returned: nothing ran in between
            self.coming -= 1
        self.arrivals.set()
        return job.future

    async def photo_hits(self, data: bytes, search: SearchSpec) -> RawHits:
        """Decode, embed and search one photo; raises ImageDecodeError.

        With the model idle and nothing on its way, there is nothing to batch with: all of it
        runs as one call on the model thread (one hop). Otherwise the photo is decoded in the
        decode pool and shares the next batched forward pass."""
        if self.busy == 0 and self.coming == 0 and self.queue.empty():
            self.busy += 1
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self.model_pool, self._alone, data, search)
            finally:
                self.busy -= 1
        [hits] = await self.decode_and_search(lambda: [self.pixels(self.photo(data).image)], search)
        return hits

    def _alone(self, data: bytes, search: SearchSpec) -> RawHits:
        # A query needs pixels only: no content hash, no record.
        begin = time.perf_counter()
        pixels = self.pixels(self.photo(data).image)[None]
        decoded = time.perf_counter()
        vectors = self.encoder.embed_pixels(pixels)
        embedded = time.perf_counter()
        self.on_batch(1)
        [hits] = self._search(vectors, search)
        self.on_stage("decode", decoded - begin)
        self.on_stage("forward", embedded - decoded)
        self.on_stage("search", time.perf_counter() - embedded)
        return hits

    def _search(self, vectors: np.ndarray, search: SearchSpec) -> list[RawHits]:
        scores, ids = self.store.search(
            np.ascontiguousarray(vectors, dtype=np.float32), search.k, search.allowed
        )
        return [RawHits(s, i, v) for s, i, v in zip(scores, ids, vectors, strict=True)]

    async def _collect(self) -> list[_Job]:
        """The next batch: every queued job (up to `max_batch` images), plus those of uploads
        on their way if they come within `batch_wait_ms`. Never waits for nobody. A `work`
        job is a batch of its own."""
        loop = asyncio.get_running_loop()
        first, self._next = self._next, None
        jobs = [first if first is not None else await self.queue.get()]
        if jobs[0].work is not None:
            return jobs
        count = len(jobs[0].pixels)
        deadline = loop.time() + self.batch_wait_s
        while count < self.max_batch:
            if not self.queue.empty():
                job = self.queue.get_nowait()
                if job.work is not None:
                    self._next = job  # after this batch, alone
                    break
                jobs.append(job)
                count += len(job.pixels)
                continue
            timeout = deadline - loop.time()
            if self.coming == 0 or timeout <= 0:
                break
            self.arrivals.clear()
            try:
                await asyncio.wait_for(self.arrivals.wait(), timeout)
            except TimeoutError:
                break
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            self.busy += 1
            try:
                work = jobs[0].work
                if work is not None:
                    outcomes = [await loop.run_in_executor(self.model_pool, work)]
                else:
                    batch = np.stack([p for job in jobs for p in job.pixels])
                    outcomes = await loop.run_in_executor(
                        self.model_pool, self._forward, batch, jobs
                    )
            except Exception as exc:  # hand the failure to every waiting request; keep serving
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self.busy -= 1
            for job, outcome in zip(jobs, outcomes, strict=True):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _forward(self, batch: np.ndarray, jobs: list[_Job]) -> list[Any]:
        """On the model thread: one forward pass for the batch, then one search per group of
        jobs sharing a `SearchSpec`. Per job: its vectors, its hits, or the exception its
        search raised (that fails its own requests only)."""
        begin = time.perf_counter()
        # A job larger than a batch (the boxes of a shelf photo) in passes the machine holds.
        step = max(self.max_batch, 1)
        vectors = np.concatenate(
            [self.encoder.embed_pixels(batch[i : i + step]) for i in range(0, len(batch), step)]
        )
        self.on_stage("forward", time.perf_counter() - begin)
        self.on_batch(len(batch))
        outcomes: list[Any] = []
        start = 0
        for job in jobs:
            outcomes.append(vectors[start : start + len(job.pixels)])
            start += len(job.pixels)
        groups: dict[Hashable, tuple[SearchSpec, list[int]]] = {}
        for i, job in enumerate(jobs):
            if job.search is not None:
                groups.setdefault(job.search.key, (job.search, []))[1].append(i)
        for search, members in groups.values():
            begin = time.perf_counter()
            try:
                hits = self._search(np.concatenate([outcomes[i] for i in members]), search)
            except Exception as exc:
                for i in members:
                    outcomes[i] = exc
                continue
            self.on_stage("search", time.perf_counter() - begin)
            start = 0
            for i in members:
                count = len(outcomes[i])
                outcomes[i] = hits[start : start + count]
                start += count
        return outcomes
