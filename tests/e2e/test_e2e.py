"""End to end through real HTTP: catalogue images in, shelf photos classified, restart, reindex."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.cli import retailklip
from tests.support.paths import GROCERY, REPO
from tests.support.servers import LiveServer, wait_for

ICONIC = GROCERY / "iconic-images-and-descriptions"
PRODUCTS = {
    "banana": "Fruit/Banana",
    "lemon": "Fruit/Lemon",
    "granny-smith": "Fruit/Apple/Granny-Smith",
    "oatly-oatghurt": "Packages/Oatghurt/Oatly-Natural-Oatghurt",
    "red-bell-pepper": "Vegetables/Pepper/Red-Bell-Pepper",
    "cucumber": "Vegetables/Cucumber",
}
SHELF_PHOTOS_PER_PRODUCT = 5


def iconic(folder: str) -> Path:
    return next((ICONIC / folder).glob("*_Iconic.jpg"))


def shelf_photos(folder: str) -> list[Path]:
    return sorted((GROCERY / "test" / folder).glob("*.jpg"))[:SHELF_PHOTOS_PER_PRODUCT]


def classify_all(client: httpx.Client) -> dict[tuple[str, str], list[str]]:
    out = {}
    for sku, folder in PRODUCTS.items():
        for photo in shelf_photos(folder):
            answer = client.post("/classify", files={"image": (photo.name, photo.read_bytes())})
            assert answer.status_code == 200, answer.text
            out[(sku, photo.name)] = [m["sku"] for m in answer.json()["matches"]]
    return out


def register(client: httpx.Client, sku: str, name: str) -> None:
    path = iconic(PRODUCTS[sku])
    response = client.post(
        "/products",
        data={"sku": sku, "name": name},
        files={"images": (path.name, path.read_bytes(), "image/jpeg")},
    )
    assert response.status_code == 201, response.text


def metric(client: httpx.Client, name: str) -> float:
    return float(re.search(rf"^{name} (\S+)$", client.get("/metrics").text, re.M).group(1))


def test_catalogue_to_shelf_delete_and_restart(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = live_server(data_dir=data)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for sku, folder in PRODUCTS.items():
            register(client, sku, folder.rsplit("/", 1)[-1])
        before = classify_all(client)
        top1 = sum(skus[0] == sku for (sku, _), skus in before.items()) / len(before)
        top5 = sum(sku in skus for (sku, _), skus in before.items()) / len(before)
        # Six products, one catalogue image each: chance is 1/6 top-1. The frozen ImageNet
        # backbone does far better on these photos, and every answer holds all five SKUs.
        assert top1 >= 0.5, before
        assert top5 == 1.0

        assert client.delete("/products/banana").status_code == 204
        after_delete = classify_all(client)
        assert all("banana" not in skus for skus in after_delete.values())
        assert client.get("/products").json()["total"] == len(PRODUCTS) - 1
    server.stop()

    restarted = live_server(data_dir=data)
    with httpx.Client(base_url=restarted.url, timeout=60) as client:
        assert client.get("/products").json()["total"] == len(PRODUCTS) - 1
        assert classify_all(client) == after_delete
        # The shard files written before the restart matched SQL, so nothing was rebuilt.
        assert metric(client, "retailklip_index_shard_rebuilds") == 0
        assert client.get("/readyz").json()["index_vectors"] == len(PRODUCTS) - 1


def test_reindex_moves_the_catalogue_to_a_new_model(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = live_server(data_dir=data)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for sku in ("banana", "lemon"):
            register(client, sku, sku)
    server.stop()

    new_model = {"RETAILKLIP_MODEL": "ViT-B-32:random", "RETAILKLIP_DEVICE": "cpu"}
    switched = live_server(data_dir=data, model="ViT-B-32:random", wait_ready=False)
    photo = shelf_photos(PRODUCTS["lemon"])[0]
    with httpx.Client(base_url=switched.url, timeout=60) as client:
        # No vectors of the new model yet: not ready, and no answer from a half-built index.
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "incomplete" in ready.json()["detail"]
        answer = client.post("/classify", files={"image": (photo.name, photo.read_bytes())})
        assert answer.status_code == 503 and "incomplete" in answer.json()["detail"]
        env = {"RETAILKLIP_DATA_DIR": str(data), **new_model}
        result = retailklip("reindex", "--batch-size", "1", env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "re-embedded 2 images with openclip:ViT-B-32:random; 0 failed" in result.stdout
        # The running server follows the change log the reindex appended to, then is ready.
        assert wait_for(lambda: client.get("/readyz").status_code == 200, 30)
        assert client.get("/readyz").json()["index_vectors"] == 2
        answer = client.post("/classify", files={"image": (photo.name, photo.read_bytes())}).json()
        assert {m["sku"] for m in answer["matches"]} == {"banana", "lemon"}


def test_import_registers_a_catalogue_folder(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    catalogue = tmp_path / "catalogue"
    for sku in ("lemon", "cucumber"):
        (catalogue / sku).mkdir(parents=True)
        for photo in sorted((GROCERY / "train" / PRODUCTS[sku]).glob("*.jpg"))[:3]:
            (catalogue / sku / photo.name).write_bytes(photo.read_bytes())
    (catalogue / "lemon" / "notes.txt").write_text("not an image, not imported")
    server = live_server(api_keys="k")
    command = [sys.executable, "-m", "app.cli", "import", str(catalogue), "--url", server.url]
    env = {**os.environ, "RETAILKLIP_IMPORT_API_KEY": "k"}
    for _ in range(2):  # the second run adds nothing: same bytes are not stored twice
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "imported 2 products" in result.stdout
    with httpx.Client(base_url=server.url, headers={"X-API-Key": "k"}) as client:
        products = client.get("/products").json()["items"]
    assert {(p["sku"], p["image_count"]) for p in products} == {("lemon", 3), ("cucumber", 3)}


def reindex(data: Path, **settings: str) -> str:
    env = {"RETAILKLIP_DATA_DIR": str(data), "RETAILKLIP_MODEL": "efficientnet-lite0"}
    env.update({f"RETAILKLIP_{k.upper()}": v for k, v in settings.items()})
    result = retailklip("reindex", env={"RETAILKLIP_DEVICE": "cpu", **env}, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_reference_views_search_as_their_image_and_reindex_regenerates_them(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = live_server(data_dir=data, reference_views="thumb48,blur")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for sku in ("banana", "lemon"):
            register(client, sku, sku)
        # Two images, each with two degraded views: six vectors, two images in the API.
        assert client.get("/readyz").json()["index_vectors"] == 6
        products = client.get("/products").json()["items"]
        assert [p["image_count"] for p in products] == [1, 1]
        image_ids = {p["sku"]: p["image_ids"][0] for p in products}
        photo = shelf_photos(PRODUCTS["lemon"])[0]
        answer = client.post(
            "/classify", files={"image": (photo.name, photo.read_bytes())}, data={"top_k": "5"}
        ).json()
        # Each SKU once, with its image's id: a view never shows as a match of its own.
        assert [(m["sku"], m["image_id"]) for m in answer["matches"]] == sorted(
            image_ids.items(), key=lambda item: item[0] != answer["matches"][0]["sku"]
        )

        # Another view set: reindex regenerates the views of every image, the server follows.
        out = reindex(data, reference_views="thumb48,thumb80,blur")
        assert "re-embedded 2 images" in out
        assert wait_for(lambda: client.get("/readyz").json()["index_vectors"] == 8, 30)
        assert "re-embedded 0 images" in reindex(data, reference_views="thumb48,thumb80,blur")
        assert "re-embedded 2 images" in reindex(data, reference_views="none")
        assert wait_for(lambda: client.get("/readyz").json()["index_vectors"] == 2, 30)
        assert client.delete("/products/banana").status_code == 204
        assert client.get("/readyz").json()["index_vectors"] == 1
