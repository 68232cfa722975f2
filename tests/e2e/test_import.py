"""`retailklip import`: catalogues and metadata from the folder or CSV, refused files skipped
and reported, and an import killed half-way resumes without sending anything twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.paths import GROCERY, REPO
from tests.support.servers import LiveServer

FOLDERS = sorted(p for p in (GROCERY / "train/Packages/Juice").iterdir() if p.is_dir())[:8]


def build_folder(root: Path) -> dict[str, int]:
    """Eight products, three photos each; one has a product.json, one a broken and a fake file.
    Returns the good images per sku."""
    counts = {}
    for folder in FOLDERS:
        target = root / folder.name
        target.mkdir(parents=True)
        for photo in sorted(folder.glob("*.jpg"))[:3]:
            (target / photo.name).write_bytes(photo.read_bytes())
        counts[folder.name] = 3
    first, second = FOLDERS[0].name, FOLDERS[1].name
    (root / first / "product.json").write_text(
        json.dumps({"name": "First juice", "metadata": {"brand": "X"}, "catalogues": ["shop-a"]})
    )
    good = next((root / second).glob("*.jpg")).read_bytes()
    (root / second / "zz-truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / second / "zz-fake.png").write_text("not an image at all")
    return counts


def run(source: Path, server: LiveServer, state: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "app.cli", "import", str(source), "--url", server.url]
    command += ["--state", str(state), "--catalogue", "all", *extra]
    return subprocess.Popen(
        command, cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE, text=True
    )


def test_import_skips_refused_files_and_resumes_after_a_kill(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    source = tmp_path / "catalogue"
    counts = build_folder(source)
    server = live_server()
    state = tmp_path / "state.json"
    first = run(source, server, state)
    # Kill it (SIGKILL: no chance to tidy up) once some products are acknowledged.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        if state.is_file() and len(json.loads(state.read_text())["done"]) >= 6:
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    first.wait(60)
    assert first.returncode == -signal.SIGKILL, "the first run finished before it was killed"
    done_before = len(json.loads(state.read_text())["done"])
    assert 6 <= done_before < sum(counts.values())

    second = run(source, server, state)
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out
    assert f"{done_before} already imported earlier" in out
    assert f"{sum(counts.values()) - done_before} images sent" in out
    skipped = [line for line in out.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 2 and "3 skipped" not in out, out
    assert any("zz-truncated.jpg: image is truncated or corrupt" in s for s in skipped)
    assert any("zz-fake.png: file is not a decodable image" in s for s in skipped)

    with httpx.Client(base_url=server.url, timeout=60) as client:
        products = {p["sku"]: p for p in client.get("/products").json()["items"]}
        assert {sku: p["image_count"] for sku, p in products.items()} == counts
        first_sku = FOLDERS[0].name
        assert products[first_sku]["name"] == "First juice"
        assert products[first_sku]["metadata"] == {"brand": "X"}
        assert products[first_sku]["catalogues"] == ["all", "shop-a"]
        listed = client.get("/catalogues").json()["items"]
        assert {"name": "all", "product_count": 8} in listed

        # A CSV adds metadata/catalogues for new products and merges catalogues into old ones.
        photo = next((source / FOLDERS[2].name).glob("*.jpg"))
        extra = GROCERY / "train/Packages/Milk/Arla-Standard-Milk"
        manifest = tmp_path / "more.csv"
        manifest.write_text(
            "sku,name,path,metadata,catalogues,barcodes\n"
            f"{FOLDERS[2].name},x,{photo},,shop-b;shop-c,96385074\n"
            f'arla,Arla milk,{next(extra.glob("*.jpg"))},"{{""brand"": ""Arla""}}",shop-b,'
            "4006381333931;036000291452\n"
            "broken,,,,,\n"
        )
        third = run(manifest, server, tmp_path / "state-csv.json")
        out, _ = third.communicate(timeout=600)
        assert third.returncode == 0, out
        assert "more.csv:4: needs sku and path; skipped" in out
        merged = client.get(f"/products/{FOLDERS[2].name}").json()
        assert merged["catalogues"] == ["all", "shop-b", "shop-c"] and merged["image_count"] == 3
        assert merged["barcodes"] == ["00000096385074"]  # merged into an existing product
        arla = client.get("/products/arla").json()
        assert arla["metadata"] == {"brand": "Arla"} and arla["catalogues"] == ["all", "shop-b"]
        assert arla["barcodes"] == ["00036000291452", "04006381333931"]
