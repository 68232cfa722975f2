"""Disk-full drill: the blob directory runs out of space while products are being registered.

The blob directory is a small tmpfs mounted for the drill (needs root; unmounted afterwards).
Registrations of real shelf photos go on until the store is full, and a few more after that.
Expected: each write that cannot store its bytes answers 507 `insufficient storage for image
bytes` (never 500), and nothing is half-written: every SQL row has its blob with the right
bytes, every product has all its images, no temp file is left behind, the index counts what SQL
holds. Then the file system grows (remount) and writes succeed again without a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.databases import drop_pg_database
from tests.support.drills import blob_files, blob_path, create_database, sql_state
from tests.support.photos import grocery_photos
from tests.support.reports import table
from tests.support.servers import quiet_server

FULL = "insufficient storage for image bytes"


@contextlib.contextmanager
def small_filesystem(path: Path, size_kb: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)]
    done = subprocess.run(mount, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"cannot mount a tmpfs for the blob directory (needs root): {done.stderr}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def grow(path: Path, size_kb: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_kb}k", str(path)], check=True)


@dataclass
class DiskFullReport:
    answers: Counter[str]  # "status detail" -> count
    accepted: int
    refused_full: int
    first_full_after_kb: int  # blob bytes stored before the first 507
    missing_blobs: int
    corrupt_blobs: int
    temp_files: int
    partial: int
    refused_present: int  # products answered 507 that exist anyway
    index_matches_sql: bool
    recovered: bool
    unreferenced_blobs: int


def _answer(response: httpx.Response) -> str:
    detail = response.json().get("detail", "") if response.status_code >= 400 else ""
    return f"{response.status_code} {detail}".strip()


def run(
    size_kb: int = 1024, db: str = "sqlite", model: str = "efficientnet-lite0"
) -> DiskFullReport:
    root = Path(tempfile.mkdtemp(prefix="drill-disk-full-"))
    db_url = create_database() if db == "postgresql" else ""
    blob_dir = root / "blobs"
    photos = grocery_photos(limit=200)
    answers: Counter[str] = Counter()
    refused: list[str] = []
    try:
        with small_filesystem(blob_dir, size_kb):
            settings = {
                "database_url": db_url,
                "data_dir": root / "data",
                "blob_dir": blob_dir,
                "model": model,
                "device": "cpu",
            }
            server = quiet_server(settings, root / "server.log")
            try:
                server.start()
                client = httpx.Client(base_url=server.url, timeout=120)
                stored_kb, first_full_kb, after_full, i = 0, -1, 0, 0
                while after_full < 6 and 2 * i + 1 < len(photos):
                    pair = photos[2 * i : 2 * i + 2]
                    i += 1
                    sku = f"full-{i}"
                    files = [("images", (f"{k}.jpg", b, "image/jpeg")) for k, b in enumerate(pair)]
                    response = client.post("/products", data={"sku": sku, "name": sku}, files=files)
                    answers[_answer(response)] += 1
                    if response.status_code == 201:
                        stored_kb += sum(len(b) for b in pair) // 1024
                    if response.status_code == 507:
                        refused.append(sku)
                        first_full_kb = stored_kb if first_full_kb < 0 else first_full_kb
                        after_full += 1
                # Adding images to an existing product hits the same wall.
                extra = [("images", ("x.jpg", photos[-1], "image/jpeg"))]
                answers[_answer(client.post("/products/full-1/images", files=extra))] += 1
                model_id = client.get("/readyz").json()["model"]
                state = sql_state(
                    db_url or f"sqlite:///{root / 'data' / 'retailklip.db'}", model_id
                )
                index_vectors = client.get("/readyz").json()["index_vectors"]
                refused_present = sum(1 for s in refused if client.get(f"/products/{s}").is_success)
                grow(blob_dir, size_kb * 64)
                retry = client.post(
                    "/products",
                    data={"sku": "after-grow", "name": "after-grow"},
                    files=[("images", ("y.jpg", photos[-2], "image/jpeg"))],
                )
                answers[f"after growing: {_answer(retry)}"] += 1
                client.close()
            finally:
                server.stop()
            keys = set(state.blob_keys)
            missing = [k for k in keys if not blob_path(blob_dir, k).is_file()]
            corrupt = [
                k
                for k in keys - set(missing)
                if hashlib.sha256(blob_path(blob_dir, k).read_bytes()).hexdigest() != k
            ]
            temp_files = [p for p in blob_dir.rglob(".*") if p.is_file()]
            unreferenced = [p for p in blob_files(blob_dir) if p.name not in keys]
    finally:
        if db_url:
            drop_pg_database(db_url)
        shutil.rmtree(root, ignore_errors=True)
    return DiskFullReport(
        answers=answers,
        accepted=answers["201"],
        refused_full=answers[f"507 {FULL}"],
        first_full_after_kb=first_full_kb,
        missing_blobs=len(missing),
        corrupt_blobs=len(corrupt),
        temp_files=len(temp_files),
        partial=sum(1 for count in state.products.values() if count != 2),
        refused_present=refused_present,
        index_matches_sql=index_vectors == state.vectors,
        recovered=retry.status_code == 201,
        unreferenced_blobs=len(unreferenced),
    )


def problems(report: DiskFullReport) -> list[str]:
    found = [
        f"answered {kind} x{n}"
        for kind, n in report.answers.items()
        if kind.split()[0].isdigit() and int(kind.split()[0]) >= 500 and kind != f"507 {FULL}"
    ]
    if report.refused_full == 0:
        found.append("the blob store never filled up: no 507 seen")
    for name in ("missing_blobs", "corrupt_blobs", "temp_files", "partial", "refused_present"):
        if getattr(report, name):
            found.append(f"{name}: {getattr(report, name)}")
    if not report.index_matches_sql:
        found.append("index and SQL disagree")
    if not report.recovered:
        found.append("no write succeeded after the file system grew")
    return found


def report(result: DiskFullReport, size_kb: int) -> str:
    """The answers by kind, then one row of what the store and SQL look like afterwards."""
    columns = (
        "blob fs KB",
        "accepted",
        "507",
        "KB stored before first 507",
        "rows without blob",
        "corrupt blobs",
        "temp files left",
        "partial products",
        "507 but present",
        "index = SQL",
        "unreferenced blobs",
        "writes after growing",
    )
    values = [
        size_kb,
        result.accepted,
        result.refused_full,
        result.first_full_after_kb,
        result.missing_blobs,
        result.corrupt_blobs,
        result.temp_files,
        result.partial,
        result.refused_present,
        "yes" if result.index_matches_sql else "NO",
        result.unreferenced_blobs,
        "201" if result.recovered else "FAILED",
    ]
    answers = table(("answer", "count"), sorted(result.answers.items()))
    return f"{answers}\n\n{table(columns, [values])}"
