"""Off-loop image decoding and micro-batched encoder calls.

Decoding runs in a thread pool; every forward pass runs in one dedicated thread. Requests that
queue up while a forward pass runs share the next one. The worker waits (at most `batch_wait_ms`)
for more only while other uploads are still being decoded: a request that arrives alone is
embedded at once, with no batching delay; when the model is idle, a single /classify upload is
decoded, embedded and looked up in one call on the model thread (one thread hop instead of three).
What follows a forward pass (a classification's search, `AfterForward`) runs on the model thread
too, once for all requests of a batch that share options: one FAISS call and one lookup instead of
one per request, and no hop to another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from PIL import Image

from app.encoder.boxes import Box, pixel_boxes
from app.encoder.decode import DecodeBudget, decode_photo
from app.encoder.loading import ServingEncoder
from app.encoder.preprocess import eval_pixels, reduction_for, whole_photo
from app.encoder.views import degraded_views, view_code
from app.storage.blobs import sha256_hex
from app.storage.uploaded import UploadedImage

R = TypeVar("R")


class AfterForward(Protocol[R]):
    """Work on a forward pass's vectors, run on the model thread right after it: requests of
    one batch whose `key` is equal share one call over all their rows."""

    @property
    def key(self) -> Hashable: ...

    def __call__(self, vectors: np.ndarray) -> list[R]:
        """One result per row of `vectors`."""
        ...


@dataclass(frozen=True)
class DecodedImage(UploadedImage):
    pixels: np.ndarray  # preprocessed, (3, size, size) float32
    view_pixels: tuple[np.ndarray, ...] = ()  # degraded views, for references only


@dataclass
class _Job:
    pixels: list[np.ndarray]
    future: asyncio.Future[Any]  # the vectors, or `then`'s results for them
    then: AfterForward[Any] | None = None


class Inference:
    def __init__(
        self,
        encoder: ServingEncoder,
        max_pixels: int,
        max_batch: int,
        batch_wait_ms: float,
        on_batch: Callable[[int], None] = lambda size: None,
        reference_views: tuple[str, ...] = (),
        on_stage: Callable[[str, float], None] = lambda stage, seconds: None,
        decode_budget: DecodeBudget | None = None,
    ) -> None:
        self.encoder = encoder
        # Decoded pixels in flight across every upload: bounds what decoding can take.
        self.decode_budget = decode_budget or DecodeBudget(2 * max_pixels)
        self.whole_photo = whole_photo(encoder.preprocess)
        self.reference_views = reference_views
        self.view_codes = tuple(view_code(name) for name in reference_views)
        # Vectors each reference image puts into the index: itself and its views.
        self.vectors_per_image = 1 + len(self.view_codes)
        self.max_pixels = max_pixels
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1000
        self.on_batch = on_batch
        # Seconds per stage (app/runtime/metrics.py STAGES: decode, forward, search).
        self.on_stage = on_stage
        self.decode_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="decode")
        self.model_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        # Uploads being decoded: embed calls that will follow shortly, worth a short wait.
        self.decoding = 0
        self.busy = 0  # calls submitted to the model thread and not finished
        self.arrivals = asyncio.Event()  # set when a decode ends or a job is queued

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.model_pool.shutdown(wait=True)

    def _pixels(self, image: Image.Image) -> np.ndarray:
        return eval_pixels(image, self.encoder.preprocess)

    def _decode(self, data: bytes, with_views: bool) -> DecodedImage:
        begin = time.perf_counter()
        photo = decode_photo(data, self.max_pixels, self.whole_photo, self.decode_budget)
        views = degraded_views(photo.image, self.reference_views) if with_views else []
        decoded = DecodedImage(
            data,
            sha256_hex(data),
            photo.image_format,
            photo.width,
            photo.height,
            self._pixels(photo.image),
            tuple(self._pixels(view) for view in views),
        )
        self.on_stage("decode", time.perf_counter() - begin)
        return decoded

    async def decode(self, data: bytes, with_views: bool = False) -> DecodedImage:
        """Decode and preprocess one upload off the event loop; raises ImageDecodeError.

        `with_views`: also the configured degraded views (a reference being registered)."""
        self.decoding += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.decode_pool, self._decode, data, with_views
            )
        finally:
            self.decoding -= 1
            self.arrivals.set()

    def _decode_regions(self, data: bytes, boxes: list[Box]) -> list[np.ndarray]:
        begin = time.perf_counter()
        # At the scale where the smallest box still covers the model's input.
        sizes = [(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes]
        cfg = self.encoder.preprocess
        photo = decode_photo(
            data, self.max_pixels, lambda w, h: reduction_for(cfg, sizes), self.decode_budget
        )
        rects = pixel_boxes(boxes, photo.width, photo.height)
        crops = [self._pixels(photo.region(r)) for r in rects]
        self.on_stage("decode", time.perf_counter() - begin)
        return crops

    async def decode_regions(self, data: bytes, boxes: list[Box]) -> list[np.ndarray]:
        """One preprocessed crop per box of the decoded (EXIF-rotated) photo; raises
        ImageDecodeError for the photo, BoxError for a box outside it."""
        return await asyncio.get_running_loop().run_in_executor(
            self.decode_pool, self._decode_regions, data, boxes
        )

    async def embed(self, pixels: list[np.ndarray]) -> np.ndarray:
        vectors: np.ndarray = await self._submit(pixels, None)
        return vectors

    async def embed_then(self, pixels: list[np.ndarray], then: AfterForward[R]) -> list[R]:
        """`then(vectors)` of these pixels, run on the model thread after their forward pass."""
        results: list[R] = await self._submit(pixels, then)
        return results

    async def _submit(self, pixels: list[np.ndarray], then: AfterForward[Any] | None) -> Any:
        job = _Job(pixels, asyncio.get_running_loop().create_future(), then)
        self.queue.put_nowait(job)
        self.arrivals.set()
        return await job.future

    async def classify_one(self, data: bytes, then: AfterForward[R]) -> R:
        """Decode and embed one upload, then `then(vectors)` (search + lookup). Raises
        ImageDecodeError as `decode` does.

        With the model idle and no other upload on its way, there is nothing to batch with, so
        all of it (decode, forward, search and naming the hits) runs as one call on the model
        thread, not through the queue: one hop instead of two, and the event loop never runs
        the forward pass or the SQL lookup. When the model is busy: the shared batched path."""
        if self.busy == 0 and self.decoding == 0 and self.queue.empty():
            self.busy += 1
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self.model_pool, self._alone, data, then)
            finally:
                self.busy -= 1
        decoded = await self.decode(data)
        return (await self.embed_then([decoded.pixels], then))[0]

    def _alone(self, data: bytes, then: AfterForward[R]) -> R:
        # A query needs pixels only: no content hash, no record (this runs on the model thread).
        begin = time.perf_counter()
        photo = decode_photo(data, self.max_pixels, self.whole_photo, self.decode_budget)
        pixels = self._pixels(photo.image)[None]
        decoded = time.perf_counter()
        vectors = self.encoder.embed_pixels(pixels)
        embedded = time.perf_counter()
        self.on_batch(1)
        result = then(vectors)[0]
        self.on_stage("decode", decoded - begin)
        self.on_stage("forward", embedded - decoded)
        self.on_stage("search", time.perf_counter() - embedded)
        return result

    async def _collect(self) -> list[_Job]:
        """The next batch: every queued job (up to `max_batch` images), plus those of uploads
        still being decoded if they come within `batch_wait_ms`. Never waits for nobody."""
        loop = asyncio.get_running_loop()
        jobs = [await self.queue.get()]
        count = len(jobs[0].pixels)
        deadline = loop.time() + self.batch_wait_s
        while count < self.max_batch:
            if not self.queue.empty():
                job = self.queue.get_nowait()
                jobs.append(job)
                count += len(job.pixels)
                continue
            if self.decoding == 0:
                # A request whose decode just ended needs a few loop turns to reach the queue.
                for _ in range(3):
                    await asyncio.sleep(0)
                if self.queue.empty():
                    break
                continue
            timeout = deadline - loop.time()
            if timeout <= 0:
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
                batch = np.stack([p for job in jobs for p in job.pixels])
                outcomes = await loop.run_in_executor(self.model_pool, self._forward, batch, jobs)
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
        """On the model thread: one forward pass for the batch, then each job's `then`, once
        per group of equal keys. Per job: its vectors, its results, or the exception its `then`
        raised (that fails its own requests only)."""
        begin = time.perf_counter()
        vectors = self.encoder.embed_pixels(batch)
        self.on_stage("forward", time.perf_counter() - begin)
        self.on_batch(len(batch))
        outcomes: list[Any] = []
        start = 0
        for job in jobs:
            outcomes.append(vectors[start : start + len(job.pixels)])
            start += len(job.pixels)
        groups: dict[Hashable, tuple[AfterForward[Any], list[int]]] = {}
        for i, job in enumerate(jobs):
            if job.then is not None:
                groups.setdefault(job.then.key, (job.then, []))[1].append(i)
        for then, members in groups.values():
            begin = time.perf_counter()
            try:
                results = then(np.concatenate([outcomes[i] for i in members]))
            except Exception as exc:
                for i in members:
                    outcomes[i] = exc
                continue
            self.on_stage("search", time.perf_counter() - begin)
            start = 0
            for i in members:
                count = len(outcomes[i])
                outcomes[i] = results[start : start + count]
                start += count
        return outcomes
