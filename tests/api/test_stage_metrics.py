"""`/metrics` shows how long each stage of a classification took (decode, forward, search):
the histograms app/runtime/inference.py observes and bench/latency.py reads, on both paths
through the model thread (a lone /classify, and /classify/batch through the batching queue)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.image_factory import image_bytes
from tests.support.inprocess import in_process_client

STAGES = ("decode", "forward", "search")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("stage-metrics")
    # The batcher waits for photos still decoding only `batch_wait_ms` (5 ms by default); on a
    # loaded machine one decode can take longer and the batch splits. A long wait makes the
    # test about batching, not about this machine's speed: it never delays a complete batch.
    with in_process_client(Path(root) / "data", reference_views="none", batch_wait_ms=2000) as c:
        files = {"images": ("red.png", image_bytes("PNG", color="red"), "image/png")}
        c.post("/products", data={"sku": "red", "name": "Red"}, files=files).raise_for_status()
        yield c


def stage_counts(client: TestClient) -> dict[str, tuple[float, float]]:
    """stage -> (count, sum of seconds), from the Prometheus text."""
    text = client.get("/metrics").text
    found: dict[str, tuple[float, float]] = {}
    for stage in STAGES:
        values = []
        for part in ("count", "sum"):
            pattern = rf'^retailklip_stage_duration_seconds_{part}{{stage="{stage}"}} (\S+)$'
            match = re.search(pattern, text, re.M)
            assert match, f"no {part} for stage {stage} in /metrics"
            values.append(float(match.group(1)))
        found[stage] = (values[0], values[1])
    return found


def test_one_classify_adds_one_observation_per_stage(client: TestClient) -> None:
    before = stage_counts(client)
    files = {"image": ("q.png", image_bytes("PNG", color="red"), "image/png")}
    client.post("/classify", files=files).raise_for_status()
    after = stage_counts(client)
    for stage in STAGES:
        assert after[stage][0] == before[stage][0] + 1, stage
        assert after[stage][1] > before[stage][1], stage


def test_a_batch_is_one_forward_and_one_search_for_all_its_images(client: TestClient) -> None:
    before = stage_counts(client)
    files = [
        ("images", (f"{i}.png", image_bytes("PNG", color=c), "image/png"))
        for i, c in enumerate(("red", "blue", "green"))
    ]
    client.post("/classify/batch", files=files).raise_for_status()
    after = stage_counts(client)
    assert after["decode"][0] == before["decode"][0] + 3
    assert after["forward"][0] == before["forward"][0] + 1
    assert after["search"][0] == before["search"][0] + 1
