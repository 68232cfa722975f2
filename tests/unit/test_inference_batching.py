"""Micro-batching: a lone request never waits for company; concurrent ones share a forward pass."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from app.encoder.decode import ImageDecodeError
from app.encoder.preprocess import PreprocessConfig
from app.runtime.inference import Inference, SearchSpec
from app.settings import Settings
from tests.support.paths import GROCERY


@dataclass
class CountingEncoder:
    """Stands in for the model: records every forward pass's batch size."""

    preprocess: PreprocessConfig = field(default_factory=lambda: PreprocessConfig(image_size=32))
    batches: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    gate: threading.Event | None = None  # the first pass waits for it (others queue meanwhile)

    def embed_pixels(self, batch: np.ndarray) -> np.ndarray:
        if self.gate is not None and not self.batches:
            self.gate.wait(5)
        time.sleep(self.delay_s)
        self.batches.append(len(batch))
        return np.ones((len(batch), 4), dtype=np.float32)


def photos(count: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted((GROCERY / "test/Fruit/Banana").glob("*.jpg"))[:count]]


@dataclass
class CountingStore:
    """Stands in for the index: records every search (its thread, its rows), answers each row
    with its call number as the only hit."""

    model_id: str = "test"
    calls: list[tuple[str, int]] = field(default_factory=list)
    fail_for: np.ndarray | None = None  # searches with this `allowed` raise

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append((threading.current_thread().name, len(queries)))
        if allowed is not None and allowed is self.fail_for:
            raise RuntimeError("search failed")
        ids = np.full((len(queries), k), -1, np.int64)
        ids[:, 0] = len(self.calls)
        return np.zeros((len(queries), k), np.float32), ids


def runtime_with(
    encoder: CountingEncoder, store: CountingStore | None = None, **options: float
) -> Inference:
    return Inference(
        encoder,  # type: ignore[arg-type]
        store or CountingStore(),  # type: ignore[arg-type]
        10**8,
        max_batch=32,
        batch_wait_ms=options.get("batch_wait_ms", 0),
    )


async def classify_like(runtime: Inference, data: bytes) -> np.ndarray:
    [pixels] = await runtime.decode_and_search(
        lambda: [runtime.pixels(runtime.photo(data).image)], SearchSpec(1, None)
    )
    return pixels.image_ids


def test_a_lone_request_is_embedded_without_the_batch_wait() -> None:
    async def scenario() -> tuple[float, list[int]]:
        encoder = CountingEncoder()
        runtime = runtime_with(encoder, batch_wait_ms=2000)
        runtime.start()
        try:
            data = photos(1)[0]
            await classify_like(runtime, data)  # warm-up
            begin = time.perf_counter()
            for _ in range(3):
                await classify_like(runtime, data)
            return (time.perf_counter() - begin) / 3, encoder.batches
        finally:
            await runtime.stop()

    per_request, batches = asyncio.run(scenario())
    # The wait is 2 s; a request alone does not pay it (decode + stub forward take milliseconds).
    assert per_request < 0.5, per_request
    assert batches == [1, 1, 1, 1]


def test_concurrent_requests_share_forward_passes() -> None:
    async def scenario() -> list[int]:
        encoder = CountingEncoder(delay_s=0.05)
        runtime = runtime_with(encoder, batch_wait_ms=200)
        runtime.start()
        try:
            hits = await asyncio.gather(*(classify_like(runtime, d) for d in photos(8)))
            assert all(h.shape == (1,) for h in hits)
            return encoder.batches
        finally:
            await runtime.stop()

    batches = asyncio.run(scenario())
    assert sum(batches) == 8
    # Eight uploads decoding together: the worker waits for the ones still on their way, so
    # they go through in far fewer passes than one each.
    assert len(batches) <= 3, batches


def test_a_failed_decode_leaves_no_upload_counted_on_its_way() -> None:
    """The batcher waits only while uploads are on their way: one that failed must not be."""

    async def scenario() -> tuple[int, list[int]]:
        encoder = CountingEncoder()
        runtime = runtime_with(encoder, batch_wait_ms=2000)
        runtime.start()
        try:
            with pytest.raises(ImageDecodeError):
                await classify_like(runtime, b"not an image")
            begin = time.perf_counter()
            await classify_like(runtime, photos(1)[0])
            assert time.perf_counter() - begin < 0.5  # no 2 s wait for a ghost
            return runtime.coming, encoder.batches
        finally:
            await runtime.stop()

    coming, batches = asyncio.run(scenario())
    assert coming == 0 and batches == [1]


def test_requests_queued_behind_a_busy_model_go_in_one_pass() -> None:
    async def scenario() -> list[int]:
        gate = threading.Event()
        encoder = CountingEncoder(gate=gate)
        runtime = runtime_with(encoder)
        runtime.start()
        try:
            pixels = [runtime.pixels(runtime.photo(photos(1)[0]).image)]
            first = asyncio.ensure_future(runtime.embed(pixels))
            await asyncio.sleep(0.05)
            rest = [asyncio.ensure_future(runtime.embed(pixels)) for _ in range(5)]
            await asyncio.sleep(0.05)
            gate.set()
            await asyncio.gather(first, *rest)
            return encoder.batches
        finally:
            await runtime.stop()

    assert asyncio.run(scenario()) == [1, 5]


def test_a_lone_photo_runs_in_one_call_on_the_model_thread() -> None:
    async def scenario() -> tuple[CountingStore, list[int], list[int]]:
        encoder = CountingEncoder()
        store = CountingStore()
        runtime = runtime_with(encoder, store, batch_wait_ms=2000)
        runtime.start()
        spec = SearchSpec(1, None)
        try:
            assert (await runtime.photo_hits(photos(1)[0], spec)).image_ids[0] == 1
            with pytest.raises(ImageDecodeError) as refused:
                await runtime.photo_hits(b"not an image", spec)
            assert refused.value.reason == "not_an_image"
            # Eight at once: the first goes alone, the others take the batched path.
            found = await asyncio.gather(*(runtime.photo_hits(d, spec) for d in photos(8)))
            return store, [int(h.image_ids[0]) for h in found], encoder.batches
        finally:
            await runtime.stop()

    store, calls, batches = asyncio.run(scenario())
    # Decode, forward and search of a lone request: one call on the model thread.
    assert all(thread.startswith("encoder") for thread, _ in store.calls)
    assert sum(batches) == 9 and len(batches) < 9, batches
    # Each forward pass of the batched path is followed by one search for all its requests.
    assert [rows for _, rows in store.calls] == batches
    assert sorted(set(calls)) == list(range(2, len(batches) + 1))


def test_searches_of_one_batch_are_grouped_by_spec_and_fail_apart() -> None:
    async def scenario() -> tuple[list[object], list[int], CountingStore]:
        gate = threading.Event()
        encoder = CountingEncoder(gate=gate)
        broken_scope = np.array([1, 2], np.int64)
        store = CountingStore(fail_for=broken_scope)
        runtime = runtime_with(encoder, store)
        runtime.start()
        a = SearchSpec(1, None)
        b = SearchSpec(2, None)
        broken = SearchSpec(1, broken_scope)
        try:
            pixels = [runtime.pixels(runtime.photo(photos(1)[0]).image)]
            first = asyncio.ensure_future(runtime.embed(pixels))
            await asyncio.sleep(0.05)
            queued = [
                asyncio.ensure_future(runtime.search(pixels, spec))
                for spec in (a, b, a, broken, a, b)
            ]
            await asyncio.sleep(0.05)
            gate.set()
            await first
            outcomes = await asyncio.gather(*queued, return_exceptions=True)
            return outcomes, encoder.batches, store
        finally:
            await runtime.stop()

    outcomes, batches, store = asyncio.run(scenario())
    assert batches == [1, 6]  # one forward pass for the six, then one search per spec
    assert sorted(rows for _, rows in store.calls) == [1, 2, 3]
    assert isinstance(outcomes[3], RuntimeError)  # only the failing group's request fails
    assert all(not isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 3)


def test_batch_size_defaults_by_device() -> None:
    assert Settings().batching.size_for("cpu") == 4
    assert Settings().batching.size_for("cuda:0") == 32
    assert Settings(max_batch=8).batching.size_for("cpu") == 8
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Settings(max_batch=0)
