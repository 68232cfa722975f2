"""Push for the change log (PostgreSQL LISTEN/NOTIFY): a committed write wakes the other
replicas at once, a rolled-back one never does, and a lost notification is caught by the poll."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.db import changelog
from app.db.log_notices import LogListener
from app.db.session import make_engine
from tests.image_factory import jpeg
from tests.storage.test_storage import make_catalogue, new_images
from tests.support.databases import create_pg_database, drop_pg_database
from tests.support.paths import GROCERY
from tests.support.servers import running_server

ICONIC = GROCERY / "iconic-images-and-descriptions"
LEMON = ICONIC / "Fruit/Lemon/Lemon_Iconic.jpg"
BANANA = ICONIC / "Fruit/Banana/Banana_Iconic.jpg"


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until `condition()` holds (it must within `timeout`)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "not within the time allowed"
        time.sleep(0.01)
    return time.monotonic() - start


def test_a_commit_is_heard_and_a_rollback_is_not(pg_url: str, tmp_path: Path) -> None:
    writer = make_catalogue(pg_url, tmp_path)
    listener = LogListener(make_engine(pg_url), "test-model", lambda: None)
    assert listener.start()
    try:
        time.sleep(0.3)  # LISTEN is in place
        writer.create_product("p", "P", {}, new_images(1, "p"))
        until(lambda: listener.heard == 1, 5)
        with writer.session_factory() as session:
            changelog.append(session, "test-model", "add", np.array([99]))
            session.rollback()  # never committed: never heard
        writer.add_images("p", new_images(1, "q"))
        until(lambda: listener.heard == 2, 5)
        time.sleep(0.3)
        assert listener.heard == 2
    finally:
        listener.stop()


def test_sqlite_has_nothing_to_listen_to(tmp_path: Path) -> None:
    listener = LogListener(make_engine(f"sqlite:///{tmp_path}/x.db"), "m", lambda: None)
    assert listener.start() is False


def register(client: httpx.Client, sku: str, path: Path) -> None:
    created = client.post(
        "/products", data={"sku": sku, "name": sku}, files=[("images", jpeg(path))]
    )
    assert created.status_code == 201, created.text


def names(client: httpx.Client, sku: str, path: Path) -> bool:
    answer = client.post("/classify", files={"image": jpeg(path)}, data={"top_k": "1"}).json()
    return bool(answer["matches"]) and answer["matches"][0]["sku"] == sku


def test_a_write_on_one_replica_is_findable_on_the_next_at_once(
    pg_url: str, tmp_path: Path
) -> None:
    for replica in ("a", "b"):
        (tmp_path / replica).mkdir()
    # A poll every 30 s: only the notification can make a write visible within a second.
    with (
        running_server(tmp_path / "a", database_url=pg_url, sync_interval_s=30) as a,
        running_server(tmp_path / "b", database_url=pg_url, sync_interval_s=30) as b,
        httpx.Client(base_url=a.url, timeout=60) as on_a,
        httpx.Client(base_url=b.url, timeout=60) as on_b,
    ):
        register(on_a, "banana", BANANA)
        # B's listener connects beside its start-up: this first write may beat it, and then
        # the 30 s poll brings it; from here on B is listening.
        until(lambda: names(on_b, "banana", BANANA), 40.0)
        register(on_a, "lemon", LEMON)
        assert until(lambda: names(on_b, "lemon", LEMON), 2.0) < 2.0


def test_a_lost_notification_is_caught_by_the_poll(pg_url: str, tmp_path: Path) -> None:
    for replica in ("a", "b"):
        (tmp_path / replica).mkdir()
    # B hears nothing (as if every notification were lost); its poll, every second, finds it.
    with (
        running_server(tmp_path / "a", database_url=pg_url) as a,
        running_server(tmp_path / "b", database_url=pg_url, sync_interval_s=1, log_push=False) as b,
        httpx.Client(base_url=a.url, timeout=60) as on_a,
        httpx.Client(base_url=b.url, timeout=60) as on_b,
    ):
        register(on_a, "lemon", LEMON)
        assert until(lambda: names(on_b, "lemon", LEMON), 5.0) < 5.0
