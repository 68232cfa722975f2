"""Backup drill: `retailklip backup` while writers keep registering and deleting products through
a real server, `retailklip restore` into a fresh database and blob directory, and a new server
on the restored state.

Before the writers start, real Grocery Store photos are registered, one product each, and each
is classified once on the source server: its answer (sku, score) is what the restored server
must give. Writers then register noise-photo products and delete some of their own (only those
with an odd number, so the even ones are never in doubt). The drill records when each answer
came and when the backup command was started, then checks on the restored server:

- every product acknowledged before the backup started, and never sent a delete, is there with
  its images, and classifies as itself (the seeded ones with the same score);
- every product whose delete was acknowledged before the backup started is gone;
- anything else (acknowledged or deleted while the backup ran) may be either way: counted;
- no restored row names missing bytes, and the restore's own counts agree with the manifest.
"""

from __future__ import annotations

import json
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.cli import retailklip
from tests.support.databases import create_pg_database, drop_pg_database
from tests.support.drills import blob_path, sql_state
from tests.support.photos import grocery_photos, noise_jpeg
from tests.support.servers import LiveServer, quiet_server, settings_env

HEADERS = (
    "database",
    "seeded",
    "acked before",
    "deleted before",
    "acked during",
    "backup products",
    "backup images",
    "backup blobs",
    "backup s",
    "restore s",
    "missing",
    "undeleted",
    "wrong answer",
    "rows without blob",
)


@dataclass
class Ledger:
    created: dict[str, float] = field(default_factory=dict)  # sku -> when acknowledged
    images: dict[str, bytes] = field(default_factory=dict)  # sku -> its one photo
    delete_sent: dict[str, float] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)  # sku -> when acknowledged
    lock: threading.Lock = field(default_factory=threading.Lock)


def _writer(url: str, ledger: Ledger, stop: threading.Event, tag: str, seed: int) -> None:
    rng = random.Random(seed)
    mine: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        n = 0
        while not stop.is_set():
            n += 1
            sku = f"w{tag}-{n}"
            photo = noise_jpeg(rng)
            answer = client.post(
                "/products",
                data={"sku": sku, "name": sku},
                files=[("images", (f"{sku}.jpg", photo, "image/jpeg"))],
            )
            if answer.status_code == 201:
                with ledger.lock:
                    ledger.created[sku] = time.monotonic()
                    ledger.images[sku] = photo
                if n % 2:
                    mine.append(sku)
            if mine and rng.random() < 0.4:
                victim = mine.pop(rng.randrange(len(mine)))
                with ledger.lock:
                    ledger.delete_sent[victim] = time.monotonic()
                if client.delete(f"/products/{victim}").status_code == 204:
                    with ledger.lock:
                        ledger.deleted[victim] = time.monotonic()


def _top(client: httpx.Client, photo: bytes) -> tuple[str | None, float]:
    answer = client.post("/classify?top_k=1", files={"image": ("q.jpg", photo, "image/jpeg")})
    answer.raise_for_status()
    results = answer.json()["matches"]
    return (results[0]["sku"], float(results[0]["score"])) if results else (None, 0.0)


@contextmanager
def _database(backend: str, root: Path, name: str) -> Iterator[str | None]:
    """A fresh database: a PostgreSQL one, or None for the SQLite file in the data dir."""
    if backend == "sqlite":
        yield None
        return
    url = create_pg_database(prefix=f"retailklip_{name}")
    try:
        yield url
    finally:
        drop_pg_database(url)


def _settings(root: Path, url: str | None, model: str) -> dict[str, object]:
    settings: dict[str, object] = {"data_dir": root, "model": model, "device": "cpu"}
    if url is not None:
        settings["database_url"] = url
    return settings


def run(backend: str, model: str, seeded: int = 8, writers: int = 2) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix=f"drill-backup-{backend}-"))
    ledger = Ledger()
    expected_scores: dict[str, tuple[str | None, float]] = {}
    with (
        _database(backend, root, "source") as source_url,
        _database(backend, root, "restored") as restored_url,
    ):
        source_settings = _settings(root / "source", source_url, model)
        source = quiet_server(source_settings, root / "source.log").start()
        try:
            with httpx.Client(base_url=source.url, timeout=120) as client:
                for i, photo in enumerate(grocery_photos("train", limit=seeded)):
                    sku = f"seed-{i}"
                    client.post(
                        "/products",
                        data={"sku": sku, "name": sku},
                        files=[("images", (f"{sku}.jpg", photo, "image/jpeg"))],
                    ).raise_for_status()
                    ledger.created[sku] = time.monotonic()
                    ledger.images[sku] = photo
                for sku in list(ledger.created):
                    expected_scores[sku] = _top(client, ledger.images[sku])
            stop = threading.Event()
            threads = [
                threading.Thread(target=_writer, args=(source.url, ledger, stop, str(w), w))
                for w in range(writers)
            ]
            for thread in threads:
                thread.start()
            time.sleep(3)  # writes flowing
            started = time.monotonic()
            backup_dir = root / "backup"
            backup = retailklip(
                "backup", str(backup_dir), env=settings_env(source_settings), timeout=600
            )
            backup_s = time.monotonic() - started
            time.sleep(1)  # writes go on after it, too
            stop.set()
            for thread in threads:
                thread.join(120)
        finally:
            source.stop()
        if backup.returncode != 0:
            raise AssertionError(f"backup failed: {backup.stdout}\n{backup.stderr}")
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        restored_settings = _settings(root / "restored", restored_url, model)
        began = time.monotonic()
        restore = retailklip(
            "restore", str(backup_dir), env=settings_env(restored_settings), timeout=600
        )
        restore_s = time.monotonic() - began
        if restore.returncode != 0:
            raise AssertionError(f"restore failed: {restore.stdout}\n{restore.stderr}")
        restored = quiet_server(restored_settings, root / "restored.log").start()
        try:
            row = _check(restored, ledger, expected_scores, started)
        finally:
            restored.stop()
        state = sql_state(restored_url or f"sqlite:///{root / 'restored' / 'retailklip.db'}", "")
    blobs = root / "restored" / "blobs"
    row.update(
        {
            "database": backend,
            "seeded": seeded,
            "backup products": manifest["counts"]["products"],
            "backup images": manifest["counts"]["reference_images"],
            "backup blobs": manifest["blobs"],
            "backup s": round(backup_s, 1),
            "restore s": round(restore_s, 1),
            "rows without blob": sum(not blob_path(blobs, k).is_file() for k in state.blob_keys),
        }
    )
    return row


def _check(
    server: LiveServer,
    ledger: Ledger,
    expected_scores: dict[str, tuple[str | None, float]],
    started: float,
) -> dict[str, object]:
    must_exist = [
        sku
        for sku, acked in ledger.created.items()
        if acked < started and sku not in ledger.delete_sent
    ]
    must_be_gone = [sku for sku, acked in ledger.deleted.items() if acked < started]
    missing, undeleted, wrong = [], [], []
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for sku in must_exist:
            product = client.get(f"/products/{sku}")
            if product.status_code != 200 or product.json()["image_count"] != 1:
                missing.append(sku)
                continue
            got = _top(client, ledger.images[sku])
            want = expected_scores.get(sku)
            if got[0] != sku or (want is not None and abs(got[1] - want[1]) > 1e-5):
                wrong.append(f"{sku}: {got} (before: {want})")
        for sku in must_be_gone:
            if client.get(f"/products/{sku}").status_code != 404:
                undeleted.append(sku)
    during = sum(acked >= started for acked in ledger.created.values())
    return {
        "acked before": len(must_exist),
        "deleted before": len(must_be_gone),
        "acked during": during,
        "missing": len(missing),
        "undeleted": len(undeleted),
        "wrong answer": len(wrong),
        "details": {"missing": missing, "undeleted": undeleted, "wrong answer": wrong},
    }


def problems(row: dict[str, object]) -> list[str]:
    details: dict[str, list[str]] = row["details"]  # type: ignore[assignment]
    found = [f"{key}: {skus}" for key, skus in details.items() if skus]
    if row["rows without blob"]:
        found.append(f"rows without blob: {row['rows without blob']}")
    return found
