"""`retailklip import`: register a whole catalogue through the HTTP API, with a progress bar.

Input is a folder with one sub-folder per SKU (folder name = sku = name; an optional
`product.json` in it gives `name`, `metadata` and `catalogues`), or a CSV manifest with the
columns `sku,name,path` (one row per image; paths relative to the manifest) and optionally
`metadata` (a JSON object), `catalogues` (names separated by `;`) and `barcodes` (GTINs separated
by `;`; `product.json` takes a list). `--catalogue` adds catalogues to every product. Products
that exist already get the images added (duplicates are ignored by the service) and the
catalogues and barcodes merged in.

A file the service refuses (not an image, truncated, too large, ...) is skipped and reported;
the rest of its product goes on. Progress is kept in a state file written after every
acknowledged request, so a stopped import (Ctrl-C, a crash, the service down) resumes where it
stopped: files already acknowledged are not sent again.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
# The service names a refused upload by its index: "images[3]: file is not a decodable image".
REFUSED_UPLOAD = re.compile(r"^images\[(\d+)\]: (.*)$")


@dataclass
class ProductEntry:
    name: str
    paths: list[Path] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    catalogues: set[str] = field(default_factory=set)
    barcodes: set[str] = field(default_factory=set)


class ImportState:
    """Per file (path relative to the source): done or refused, with the size and mtime it had,
    so that a file changed since is tried again."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        data = {} if fresh or not path.is_file() else json.loads(path.read_text())
        self.done: dict[str, list[int]] = data.get("done", {})
        self.refused: dict[str, list[Any]] = data.get("refused", {})

    @staticmethod
    def stamp(file: Path) -> list[int]:
        stat = file.stat()
        return [stat.st_size, stat.st_mtime_ns]

    def earlier(self, key: str, file: Path) -> str | None:
        """`done`, or the reason it was refused, if an earlier run settled this very file."""
        try:
            stamp = self.stamp(file)
        except OSError:
            return None
        if self.done.get(key) == stamp:
            return "done"
        refused = self.refused.get(key, [])
        return str(refused[2]) if refused[:2] == stamp else None

    def save(self) -> None:
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps({"done": self.done, "refused": self.refused}))
        os.replace(temp, self.path)  # a crash leaves the old state or the new one, never half


def read_catalogue(source: Path, problems: list[str]) -> dict[str, ProductEntry]:
    catalogue: dict[str, ProductEntry] = {}
    if source.is_dir():
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                continue
            entry = ProductEntry(folder.name, images)
            described = folder / "product.json"
            if described.is_file():
                try:
                    info = json.loads(described.read_text())
                    entry.name = str(info.get("name") or folder.name)
                    entry.metadata = dict(info.get("metadata") or {})
                    entry.catalogues = set(info.get("catalogues") or [])
                    entry.barcodes = {str(b) for b in info.get("barcodes") or []}
                except (ValueError, TypeError) as exc:
                    problems.append(f"{described}: not a product description ({exc}); skipped")
                    continue
            catalogue[folder.name] = entry
        return catalogue
    with open(source, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            sku, path = (row.get("sku") or "").strip(), (row.get("path") or "").strip()
            if not sku or not path:
                problems.append(f"{source}:{line}: needs sku and path; skipped")
                continue
            try:
                metadata = json.loads(row["metadata"]) if row.get("metadata") else {}
                if not isinstance(metadata, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                problems.append(f"{source}:{line}: metadata is not a JSON object ({exc}); skipped")
                continue
            entry = catalogue.setdefault(sku, ProductEntry(row.get("name") or sku))
            entry.paths.append(source.parent / path)
            entry.metadata = entry.metadata or metadata
            entry.catalogues |= {c.strip() for c in (row.get("catalogues") or "").split(";")}
            entry.catalogues.discard("")
            entry.barcodes |= {b.strip() for b in (row.get("barcodes") or "").split(";")}
            entry.barcodes.discard("")
    return catalogue


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
    return [part for part in out if part]


def default_state_path(source: Path, url: str) -> Path:
    """One per (source, service), outside the source (which may be read-only)."""
    digest = hashlib.sha256(f"{source.resolve()}\n{url}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "retailklip"
    cache.mkdir(parents=True, exist_ok=True)
    return cache / f"import-{digest}.json"


class ServiceError(Exception):
    """The service could not take a request (down, 5xx, 401): stop, keep the state, resume."""


class Importer:
    def __init__(self, client: httpx.Client, source: Path, state: ImportState) -> None:
        self.client = client
        self.root = source if source.is_dir() else source.parent
        self.state = state
        self.created = self.images = self.resumed = 0
        self.refused: list[str] = []

    def key(self, path: Path) -> str:
        return os.path.relpath(path, self.root)

    def product(self, sku: str, entry: ProductEntry, max_images: int, max_bytes: int) -> None:
        pending = []
        for path in entry.paths:
            earlier = self.state.earlier(self.key(path), path)
            if earlier == "done":
                self.resumed += 1
            elif earlier is not None:
                self.refused.append(f"{self.key(path)}: {earlier} (in an earlier run)")
            elif not path.is_file():
                self.refuse(path, "missing or unreadable file")
            else:
                pending.append(path)
        if not pending:
            return
        mode = "create"
        for part in chunks(pending, max_images, max_bytes):
            mode = self.send(sku, entry, part, mode)
        if entry.catalogues and mode == "existing":
            self.merge_catalogues(sku, entry.catalogues)
        if entry.barcodes and mode == "existing":
            self.merge_barcodes(sku, entry.barcodes)

    def send(self, sku: str, entry: ProductEntry, part: list[Path], mode: str) -> str:
        """Post one chunk, dropping refused files until the rest goes through. `mode`: "create"
        (try POST /products), "created" (by this run) or "existing" (before this run: its
        catalogues are merged in afterwards); returns the mode for the next chunk."""
        while part:
            files = [("images", (p.name, p.read_bytes())) for p in part]
            if mode == "create":
                data: dict[str, Any] = {"sku": sku, "name": entry.name}
                if entry.metadata:
                    data["metadata"] = json.dumps(entry.metadata)
                if entry.catalogues:
                    data["catalogues"] = sorted(entry.catalogues)
                if entry.barcodes:
                    data["barcodes"] = sorted(entry.barcodes)
                response = self.post("/products", data=data, files=files)
                if response.status_code == 409 and _detail(response).startswith("product already"):
                    mode = "existing"
                    continue
            else:
                response = self.post(f"/products/{sku}/images", files=files)
            if response.status_code == 201:
                for path in part:
                    self.state.done[self.key(path)] = ImportState.stamp(path)
                self.state.save()
                self.images += len(part)
                if mode == "create":
                    self.created += 1
                    mode = "created"
                return mode
            detail = _detail(response)
            refused = REFUSED_UPLOAD.match(detail)
            if refused and int(refused.group(1)) < len(part):
                self.refuse(part.pop(int(refused.group(1))), refused.group(2))
            elif response.status_code == 413 and len(part) == 1:
                self.refuse(part.pop(), "over the service's upload limit")
            elif response.status_code == 413:
                half = len(part) // 2
                mode = self.send(sku, entry, part[:half], mode)
                part = part[half:]
            else:  # the product itself was refused (bad sku, name, metadata, catalogue)
                for path in part:
                    self.refuse(path, f"product {sku}: {response.status_code} {detail}")
                return mode
        return mode

    def merge_catalogues(self, sku: str, wanted: set[str]) -> None:
        current = self.client.get(f"/products/{sku}")
        if current.status_code != 200:
            raise ServiceError(f"GET /products/{sku}: {current.status_code} {_detail(current)}")
        have = set(current.json().get("catalogues", []))
        if not wanted <= have:
            response = self.client.put(f"/products/{sku}/catalogues", json=sorted(have | wanted))
            if response.status_code != 200:
                self.refused.append(f"{sku}: catalogues {response.status_code} {_detail(response)}")

    def merge_barcodes(self, sku: str, wanted: set[str]) -> None:
        response = self.post(f"/products/{sku}/barcodes", data={"barcodes": sorted(wanted)})
        if response.status_code != 200:
            self.refused.append(f"{sku}: barcodes {response.status_code} {_detail(response)}")

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.post(url, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"POST {url}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (401, 403):
            raise ServiceError(f"POST {url}: {response.status_code} {_detail(response)}")
        return response

    def refuse(self, path: Path, reason: str) -> None:
        key = self.key(path)
        with contextlib.suppress(OSError):  # a missing file is simply reported every run
            self.state.refused[key] = [*ImportState.stamp(path), reason]
        self.refused.append(f"{key}: {reason}")
        tqdm.write(f"skipped {key}: {reason}")


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:200]


def run_import(
    source: Path,
    url: str,
    api_key: str | None,
    max_images: int = 16,
    max_bytes: int = 16 * 1024 * 1024,
    catalogues: list[str] | None = None,
    state_path: Path | None = None,
    restart: bool = False,
) -> int:
    problems: list[str] = []
    catalogue = read_catalogue(source, problems)
    for entry in catalogue.values():
        entry.catalogues |= set(catalogues or [])
    state = ImportState(state_path or default_state_path(source, url), fresh=restart)
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        importer = Importer(client, source, state)
        try:
            for sku, entry in tqdm(catalogue.items(), desc="import", unit="sku"):
                importer.product(sku, entry, max_images, max_bytes)
        except (ServiceError, KeyboardInterrupt) as exc:
            state.save()
            print(f"stopped: {exc or 'interrupted'}; run the same command again to resume")
            return 1
    for line in problems + importer.refused:
        print(f"skipped: {line}")
    print(
        f"imported {len(catalogue)} products from {source}: {importer.created} created, "
        f"{importer.images} images sent, {importer.resumed} already imported earlier, "
        f"{len(problems) + len(importer.refused)} skipped (state: {state.path})"
    )
    return 0
