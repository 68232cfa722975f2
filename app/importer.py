"""`retailklip import`: register a whole catalogue through the HTTP API, with a progress bar.

Input is a folder with one sub-folder per SKU (folder name = sku = name), or a CSV manifest with
the columns `sku,name,path` (one row per image; paths relative to the manifest). Products that
exist already get the images added instead (duplicates are ignored by the service).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import httpx
from tqdm import tqdm

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def read_catalogue(source: Path) -> dict[str, tuple[str, list[Path]]]:
    catalogue: dict[str, tuple[str, list[Path]]] = {}
    if source.is_dir():
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if images:
                catalogue[folder.name] = (folder.name, images)
        return catalogue
    rows: dict[str, list[Path]] = defaultdict(list)
    names: dict[str, str] = {}
    with open(source, newline="") as handle:
        for row in csv.DictReader(handle):
            rows[row["sku"]].append(source.parent / row["path"])
            names.setdefault(row["sku"], row.get("name") or row["sku"])
    return {sku: (names[sku], paths) for sku, paths in rows.items()}


def chunks(paths: list[Path], max_images: int, max_bytes: int) -> list[list[Path]]:
    """Split so each request stays under the service's per-request image and byte limits."""
    out: list[list[Path]] = [[]]
    size = 0
    for path in paths:
        length = path.stat().st_size
        if out[-1] and (len(out[-1]) >= max_images or size + length > max_bytes):
            out.append([])
            size = 0
        out[-1].append(path)
        size += length
    return out


def run_import(
    source: Path,
    url: str,
    api_key: str | None,
    max_images: int = 16,
    max_bytes: int = 16 * 1024 * 1024,
) -> int:
    catalogue = read_catalogue(source)
    headers = {"X-API-Key": api_key} if api_key else {}
    failures = 0
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        for sku, (name, paths) in tqdm(catalogue.items(), desc="import", unit="sku"):
            for part in chunks(paths, max_images, max_bytes):
                files = [("images", (p.name, p.read_bytes())) for p in part]
                response = client.post("/products", data={"sku": sku, "name": name}, files=files)
                if response.status_code == 409:
                    response = client.post(f"/products/{sku}/images", files=files)
                if response.status_code != 201:
                    failures += 1
                    tqdm.write(f"{sku}: {response.status_code} {response.text}")
    print(f"imported {len(catalogue)} products from {source}; {failures} failed requests")
    return 1 if failures else 0
