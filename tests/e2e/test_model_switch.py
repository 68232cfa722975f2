"""A rolling model switch on one PostgreSQL, through real HTTP: two live servers on the two
shipped models answer at once; the old one's answers never change (nor fail) while the reindex
runs; the new one is not ready until the reindex is complete; the old model's rows are dropped
once nothing serves it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.test_e2e import PRODUCTS, register, shelf_photos
from tests.support.cli import retailklip
from tests.support.servers import LiveServer, wait_for

OLD, NEW = "retailklip-lite0-shelf", "retailklip-lite0-grocery"
SKUS = ("banana", "lemon", "oatly-oatghurt", "cucumber")


def answers(client: httpx.Client, photos: list[Path]) -> list[tuple[int, list[str]]]:
    out = []
    for photo in photos:
        answer = client.post("/classify", files={"image": (photo.name, photo.read_bytes())})
        skus = [m["sku"] for m in answer.json()["matches"]] if answer.status_code == 200 else []
        out.append((answer.status_code, skus))
    return out


def test_two_models_serve_at_once_and_switch_without_failed_answers(
    make_db_url: Callable[[str], str], live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    url = make_db_url("postgresql")
    common = {
        "database_url": url,
        "blob_dir": tmp_path / "blobs",
        "sync_interval_s": 0.5,
        "device": "cpu",
    }
    env = {f"RETAILKLIP_{k.upper()}": str(v) for k, v in common.items()}
    old = live_server(data_dir=tmp_path / "old", model=OLD, **common)
    photos = [shelf_photos(PRODUCTS[sku])[0] for sku in SKUS]
    with httpx.Client(base_url=old.url, timeout=120) as client:
        for sku in SKUS:
            register(client, sku, sku)
        old_model = client.get("/readyz").json()["model"]
        before = answers(client, photos)
    assert all(status == 200 and skus for status, skus in before)

    # The new replica starts first (a rolling deploy): up, but not ready, and answers nothing.
    new = live_server(data_dir=tmp_path / "new", model=NEW, wait_ready=False, **common)
    with httpx.Client(base_url=new.url, timeout=120) as client:
        assert client.get("/readyz").status_code == 503
        assert answers(client, photos[:1])[0][0] == 503

    # While the reindex runs, the old replica keeps answering exactly as before.
    during: list[list[tuple[int, list[str]]]] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with httpx.Client(base_url=old.url, timeout=120) as client:
            while not stop.is_set():
                during.append(answers(client, photos))

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        result = retailklip("reindex", "--batch-size", "1", env={**env, "RETAILKLIP_MODEL": NEW})
    finally:
        stop.set()
        asker.join(300)
    assert result.returncode == 0, result.stderr
    assert f"re-embedded {len(SKUS)} images" in result.stdout
    assert during and all(round_ == before for round_ in during)

    with httpx.Client(base_url=new.url, timeout=120) as client:
        assert wait_for(lambda: client.get("/readyz").status_code == 200, 60)
        ready = client.get("/readyz").json()
        assert ready["model"] != old_model and ready["index_vectors"] >= len(SKUS)
        after_new = answers(client, photos)
    with httpx.Client(base_url=old.url, timeout=120) as client:
        assert answers(client, photos) == before  # both models answer at once
    assert all(status == 200 and skus for status, skus in after_new)
    # Both models recognise the products (top-1 is the photographed SKU for most photos).
    assert sum(skus[0] == sku for (_, skus), sku in zip(after_new, SKUS, strict=True)) >= 3

    listing = retailklip("models", env=env)
    assert old_model in listing.stdout and ready["model"] in listing.stdout, listing.stderr
    refused = retailklip("drop-model", old_model, env=env)
    assert refused.returncode == 1 and "refusing" in refused.stdout
    old.stop()  # the switch is over: nothing serves the old model
    dropped = retailklip("drop-model", old_model, "--live-s", "0", env=env)
    assert dropped.returncode == 0, dropped.stderr
    with httpx.Client(base_url=new.url, timeout=120) as client:
        assert answers(client, photos) == after_new
