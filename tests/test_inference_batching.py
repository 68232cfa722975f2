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
from app.runtime.inference import Inference
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


async def classify_like(runtime: Inference, data: bytes) -> np.ndarray:
    decoded = await runtime.decode(data)
    return await runtime.embed([decoded.pixels])


def test_a_lone_request_is_embedded_without_the_batch_wait() -> None:
    async def scenario() -> tuple[float, list[int]]:
        encoder = CountingEncoder()
        runtime = Inference(encoder, 10**8, max_batch=32, batch_wait_ms=2000)
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
        runtime = Inference(encoder, 10**8, max_batch=32, batch_wait_ms=200)
        runtime.start()
        try:
            vectors = await asyncio.gather(*(classify_like(runtime, d) for d in photos(8)))
            assert all(v.shape == (1, 4) for v in vectors)
            return encoder.batches
        finally:
            await runtime.stop()

    batches = asyncio.run(scenario())
    assert sum(batches) == 8
    # Eight uploads decoding together: the worker waits for the ones still being decoded, so
    # they go through in far fewer passes than one each.
    assert len(batches) <= 3, batches


def test_requests_queued_behind_a_busy_model_go_in_one_pass() -> None:
    async def scenario() -> list[int]:
        gate = threading.Event()
        encoder = CountingEncoder(gate=gate)
        runtime = Inference(encoder, 10**8, max_batch=32, batch_wait_ms=0)
        runtime.start()
        try:
            data = photos(1)[0]
            decoded = await runtime.decode(data)
            first = asyncio.ensure_future(runtime.embed([decoded.pixels]))
            await asyncio.sleep(0.05)
            rest = [asyncio.ensure_future(runtime.embed([decoded.pixels])) for _ in range(5)]
            await asyncio.sleep(0.05)
            gate.set()
            await asyncio.gather(first, *rest)
            return encoder.batches
        finally:
            await runtime.stop()

    assert asyncio.run(scenario()) == [1, 5]


@dataclass
class RowCounter:
    """An `AfterForward` that records each call: its thread and how many rows it got."""

    key: str = "same"
    calls: list[tuple[str, int]] = field(default_factory=list)
    fail: bool = False

    def __call__(self, vectors: np.ndarray) -> list[int]:
        self.calls.append((threading.current_thread().name, len(vectors)))
        if self.fail:
            raise RuntimeError("lookup failed")
        return [len(self.calls)] * len(vectors)


def test_classify_one_runs_alone_in_one_call_on_the_model_thread() -> None:
    async def scenario() -> tuple[RowCounter, list[int], list[int]]:
        encoder = CountingEncoder()
        runtime = Inference(encoder, 10**8, max_batch=32, batch_wait_ms=2000)
        runtime.start()
        then = RowCounter()
        try:
            assert await runtime.classify_one(photos(1)[0], then) == 1
            with pytest.raises(ImageDecodeError, match="not a decodable image"):
                await runtime.classify_one(b"not an image", then)
            # Eight at once: the first goes alone, the others take the batched path.
            calls = await asyncio.gather(*(runtime.classify_one(d, then) for d in photos(8)))
            return then, calls, encoder.batches
        finally:
            await runtime.stop()

    then, calls, batches = asyncio.run(scenario())
    # Decode, forward and search of a lone request: one call on the model thread.
    assert all(thread.startswith("encoder") for thread, _ in then.calls)
    assert sum(batches) == 9 and len(batches) < 9, batches
    # Each forward pass of the batched path is followed by one search for all its requests.
    assert [rows for _, rows in then.calls] == batches
    assert sorted(set(calls)) == list(range(2, len(batches) + 1))


def test_searches_of_one_batch_are_grouped_by_key_and_fail_apart() -> None:
    async def scenario() -> tuple[list[object], list[int]]:
        gate = threading.Event()
        encoder = CountingEncoder(gate=gate)
        runtime = Inference(encoder, 10**8, max_batch=32, batch_wait_ms=0)
        runtime.start()
        a, b, broken = RowCounter("a"), RowCounter("b"), RowCounter("c", fail=True)
        try:
            decoded = await runtime.decode(photos(1)[0])
            pixels = [decoded.pixels]
            first = asyncio.ensure_future(runtime.embed(pixels))
            await asyncio.sleep(0.05)
            queued = [
                asyncio.ensure_future(runtime.embed_then(pixels, then))
                for then in (a, b, a, broken, a, b)
            ]
            await asyncio.sleep(0.05)
            gate.set()
            await first
            outcomes = await asyncio.gather(*queued, return_exceptions=True)
            assert [rows for _, rows in a.calls] == [3] and [rows for _, rows in b.calls] == [2]
            assert len(broken.calls) == 1
            return outcomes, encoder.batches
        finally:
            await runtime.stop()

    outcomes, batches = asyncio.run(scenario())
    assert batches == [1, 6]  # one forward pass for the six, then one call per key
    assert outcomes[:3] == [[1], [1], [1]] and outcomes[4:] == [[1], [1]]
    assert isinstance(outcomes[3], RuntimeError)  # only the failing group's request fails


def test_batch_size_defaults_by_device() -> None:
    assert Settings().resolved_max_batch("cpu") == 4
    assert Settings().resolved_max_batch("cuda:0") == 32
    assert Settings(max_batch=8).resolved_max_batch("cpu") == 8
    with pytest.raises(ValueError, match="at least 1"):
        Settings(max_batch=0)
