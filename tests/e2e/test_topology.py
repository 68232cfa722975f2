"""The compose topology without docker: PostgreSQL, a migrate step, two API processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.cli import retailklip
from tests.support.databases import backend_database
from tests.support.paths import GROCERY
from tests.support.servers import LiveServer, start_server, wait_for

ICONIC = GROCERY / "iconic-images-and-descriptions"


def iconic(folder: str) -> tuple[str, bytes, str]:
    path = next((ICONIC / folder).glob("*_Iconic.jpg"))
    return (path.name, path.read_bytes(), "image/jpeg")


def skus_for(client: httpx.Client, photo: Path) -> list[str]:
    answer = client.post("/classify", files={"image": (photo.name, photo.read_bytes())})
    assert answer.status_code == 200, answer.text
    return [m["sku"] for m in answer.json()["matches"]]


@pytest.fixture
def database() -> Iterator[str]:
    with backend_database("postgresql") as url:
        yield url


def test_two_replicas_share_one_postgresql(database: str, tmp_path: Path) -> None:
    migrate = retailklip("migrate", env={"RETAILKLIP_DATABASE_URL": database}, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    common = {
        "database_url": database,
        "auto_migrate": "false",  # as in compose: the migrate service did it
        "blob_dir": tmp_path / "blobs",  # shared volume
        "sync_interval_s": 0.5,
        "api_keys": "k",
    }
    servers: list[LiveServer] = []
    try:
        a = start_server(tmp_path, tmp_path / "a", **common)
        servers.append(a)
        b = start_server(tmp_path, tmp_path / "b", **common)
        servers.append(b)
        _exercise(a, b, tmp_path, common, servers, database)
    finally:
        for server in servers:
            server.stop()


def _exercise(
    a: LiveServer, b: LiveServer, tmp: Path, common: dict, servers: list[LiveServer], url: str
) -> None:
    headers = {"X-API-Key": "k"}
    ca = httpx.Client(base_url=a.url, headers=headers, timeout=60)
    cb = httpx.Client(base_url=b.url, headers=headers, timeout=60)
    lemon_photo = sorted((GROCERY / "test/Fruit/Lemon").glob("*.jpg"))[0]

    # Register on A, found by B within the documented delay (sync interval + one rebuild).
    for sku, folder in [("lemon", "Fruit/Lemon"), ("banana", "Fruit/Banana")]:
        created = ca.post(
            "/products", data={"sku": sku, "name": sku}, files={"images": iconic(folder)}
        )
        assert created.status_code == 201
    assert wait_for(lambda: set(skus_for(cb, lemon_photo)) == {"lemon", "banana"}, 10)

    # Delete on B: gone from A's answers at once (A checks every hit against SQL).
    assert cb.delete("/products/lemon").status_code == 204
    assert "lemon" not in skus_for(ca, lemon_photo)
    assert ca.get("/products/lemon").status_code == 404

    # SIGKILL A in the middle of a stream of registrations.
    folders = sorted({p.parent for p in (ICONIC / "Packages").rglob("*_Iconic.jpg")})[:16]
    acknowledged: list[str] = []
    first_ack = threading.Event()

    def register(i: int) -> None:
        files = [
            ("images", (p.name, p.read_bytes(), "image/jpeg"))
            for p in sorted((GROCERY / "train" / folders[i].relative_to(ICONIC)).glob("*.jpg"))[:4]
        ]
        try:
            response = ca.post("/products", data={"sku": f"crash-{i}", "name": "x"}, files=files)
        except httpx.HTTPError:
            return
        if response.status_code == 201:
            acknowledged.append(f"crash-{i}")
            first_ack.set()

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(register, i) for i in range(len(folders))]
        assert first_ack.wait(120)
        a.kill()
        for future in futures:
            future.result()
    assert 1 <= len(acknowledged) < len(folders)

    restarted = start_server(tmp, tmp / "a", **common)
    servers.append(restarted)
    ca = httpx.Client(base_url=restarted.url, headers=headers, timeout=60)
    listing = ca.get("/products", params={"limit": 500}).json()["items"]
    present = {p["sku"]: p["image_count"] for p in listing if p["sku"].startswith("crash-")}
    assert set(acknowledged) <= set(present)  # nothing acknowledged is lost
    assert all(count == 4 for count in present.values())  # nothing is half there

    # SQL, blobs and both replicas' indexes agree.
    engine = create_engine(url)
    with engine.connect() as conn:
        images = conn.execute(text("SELECT count(*) FROM reference_images")).scalar_one()
        keys = conn.execute(text("SELECT blob_key FROM reference_images")).scalars().all()
    engine.dispose()
    assert all((tmp / "blobs" / k[:2] / k[2:4] / k).is_file() for k in keys)
    assert ca.get("/readyz").json()["index_vectors"] == images
    assert wait_for(lambda: cb.get("/readyz").json()["index_vectors"] == images, 10)
