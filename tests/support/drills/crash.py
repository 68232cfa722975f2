"""Crash drill: SIGKILL `retailklip serve` on PostgreSQL during concurrent registrations and
deletions, restart it, and check that nothing acknowledged was lost or half-written.

Each cycle: writers register products (a fresh sku, `--images` small JPEGs each) and delete
products registered earlier; once the cycle's first registration is acknowledged, the server gets
SIGKILL at a random moment within 1.5 s, mid-request. After the restart the drill compares SQL
with what the clients were told:

- lost: a registration answered 201 whose product is gone (or a delete answered 204 whose product
  is back: "undeleted");
- partial: a product with fewer or more images than were sent;
- phantom: a product in SQL that no client sent or that was refused;
- in doubt: requests cut by the kill, without an answer; either outcome is allowed, the drill
  reports how many had committed;
- agreement: every SQL row's blob file exists, and /readyz counts as many vectors as SQL holds;
  unreferenced blobs (bytes of deleted images or of cut-off registrations) are left for
  `retailklip gc-blobs` and only counted.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.databases import drop_pg_database, pg_ready
from tests.support.drills import blob_files, blob_path, create_database, sql_state
from tests.support.photos import noise_jpeg
from tests.support.reports import table
from tests.support.servers import LiveServer, ServerStartError, quiet_server

HEADERS = (
    "cycle",
    "acked creates",
    "acked deletes",
    "in doubt",
    "in doubt committed",
    "lost",
    "undeleted",
    "partial",
    "phantom",
    "SQL products",
    "SQL images",
    "rows without blob",
    "unreferenced blobs",
    "index = SQL",
    "restart s",
)


@dataclass
class Ledger:
    """What the clients were told, per sku: 'present', 'absent' or 'either'."""

    expected: dict[str, str] = field(default_factory=dict)
    deletable: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked_creates: int = 0
    acked_deletes: int = 0
    in_doubt: set[str] = field(default_factory=set)
    first_ack: threading.Event = field(default_factory=threading.Event)

    def claim(self, rng: random.Random) -> str | None:
        with self.lock:
            if not self.deletable or rng.random() > 0.3:
                return None
            return self.deletable.pop(rng.randrange(len(self.deletable)))


def _outcome(send: Callable[[], httpx.Response], ok: int) -> str:
    """'ack' (answered `ok`), 'refused' (answered otherwise, or never reached the server) or
    'unknown' (cut off: it may or may not have committed)."""
    try:
        response = send()
    except httpx.ConnectError:
        return "refused"
    except httpx.HTTPError:
        return "unknown"
    return "ack" if response.status_code == ok else "refused"


def _writer(
    url: str, ledger: Ledger, stop: threading.Event, tag: str, images: int, seed: int
) -> None:
    rng = random.Random(seed)
    n = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            sku = ledger.claim(rng)
            if sku is not None:
                result = _outcome(lambda s=sku: client.delete(f"/products/{s}"), 204)
                with ledger.lock:
                    if result == "ack":
                        ledger.expected[sku] = "absent"
                        ledger.acked_deletes += 1
                    elif result == "unknown":
                        ledger.expected[sku] = "either"
                        ledger.in_doubt.add(sku)
                    else:
                        ledger.deletable.append(sku)
                continue
            n += 1
            sku = f"crash-{tag}-{n}"
            files = [("images", (f"{i}.jpg", noise_jpeg(rng), "image/jpeg")) for i in range(images)]
            result = _outcome(
                lambda s=sku, f=files: client.post(
                    "/products", data={"sku": s, "name": s}, files=f
                ),
                201,
            )
            with ledger.lock:
                if result == "ack":
                    ledger.expected[sku] = "present"
                    ledger.deletable.append(sku)
                    ledger.acked_creates += 1
                    ledger.first_ack.set()
                elif result == "unknown":
                    ledger.expected[sku] = "either"
                    ledger.in_doubt.add(sku)
                else:
                    ledger.expected[sku] = "refused"


def _check(
    ledger: Ledger, server: LiveServer, db_url: str, blob_dir: Path, images: int
) -> dict[str, object]:
    model = httpx.get(f"{server.url}/readyz", timeout=30).json()
    state = sql_state(db_url, model["model"])
    present = state.products
    lost = sum(1 for s, e in ledger.expected.items() if e == "present" and s not in present)
    undeleted = sum(1 for s, e in ledger.expected.items() if e == "absent" and s in present)
    phantom = sum(1 for s in present if ledger.expected.get(s, "refused") == "refused")
    partial = sum(1 for count in present.values() if count != images)
    committed = sum(1 for s in ledger.in_doubt if s in present)
    keys = set(state.blob_keys)
    missing = sum(1 for k in keys if not blob_path(blob_dir, k).is_file())
    orphans = sum(1 for p in blob_files(blob_dir) if p.name not in keys)
    return {
        "in doubt": len(ledger.in_doubt),
        "in doubt committed": committed,
        "lost": lost,
        "undeleted": undeleted,
        "partial": partial,
        "phantom": phantom,
        "SQL products": len(present),
        "SQL images": len(state.blob_keys),
        "rows without blob": missing,
        "unreferenced blobs": orphans,
        "index = SQL": "yes" if model["index_vectors"] == state.vectors else "NO",
        "present": present,
    }


def _restart(server: LiveServer) -> float:
    """Start the killed server again. PostgreSQL is shared: if someone else stopped it just now,
    wait for it (up to 5 min) and start again, rather than call that a crash-safety failure."""
    try:
        return server.start().ready_after_s
    except ServerStartError:
        if pg_ready():
            raise
    print("(PostgreSQL was down at the restart, not by this drill: waiting for it)", flush=True)
    deadline = time.monotonic() + 300
    while not pg_ready():
        if time.monotonic() > deadline:
            raise RuntimeError("PostgreSQL stayed down for 5 minutes")
        time.sleep(1)
    return server.start().ready_after_s


def run(
    cycles: int = 100,
    writers: int = 4,
    images: int = 2,
    model: str = "efficientnet-lite0",
    seed: int = 0,
    work_dir: Path | None = None,
    on_row: Callable[[dict[str, object]], None] = lambda row: None,
) -> list[dict[str, object]]:
    """Run the drill; one dict per cycle (keys: HEADERS)."""
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="drill-crash-", dir=work_dir))
    db_url = create_database()
    settings = {
        "database_url": db_url,
        "data_dir": root / "data",
        "model": model,
        "device": "cpu",
        "shard_persist_interval_s": 1,  # shard files are written often, so kills hit them too
    }
    server = quiet_server(settings, root / "server.log")
    rows: list[dict[str, object]] = []
    ledger = Ledger()
    try:
        server.start()
        for cycle in range(1, cycles + 1):
            ledger.acked_creates = ledger.acked_deletes = 0
            ledger.in_doubt = set()
            ledger.first_ack.clear()
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=_writer,
                    args=(server.url, ledger, stop, f"{cycle}-{w}", images, rng.getrandbits(32)),
                )
                for w in range(writers)
            ]
            for thread in threads:
                thread.start()
            # Kill once writes are flowing (however slow the machine), at a random moment.
            if not ledger.first_ack.wait(180):
                raise RuntimeError(f"no registration acknowledged in 180 s: {server.log_tail()}")
            time.sleep(rng.uniform(0.0, 1.5))
            server.kill()
            stop.set()
            for thread in threads:
                thread.join()
            restart = _restart(server)
            checked = _check(ledger, server, db_url, root / "data" / "blobs", images)
            present = checked.pop("present")
            # Resolve the doubts: from now on a product is expected exactly where SQL has it.
            ledger.expected = {s: "present" if s in present else "absent" for s in ledger.expected}
            ledger.deletable = [s for s in ledger.deletable if s in present]
            ledger.deletable += [s for s in ledger.in_doubt if s in present]
            row = {
                "cycle": cycle,
                "acked creates": ledger.acked_creates,
                "acked deletes": ledger.acked_deletes,
                **checked,
                "restart s": round(restart, 1),
            }
            rows.append(row)
            on_row(row)
    finally:
        server.stop()
        drop_pg_database(db_url)
        shutil.rmtree(root, ignore_errors=True)
    return rows


def totals(rows: list[dict[str, object]]) -> list[object]:
    summed = ("acked creates", "acked deletes", "in doubt", "in doubt committed", "lost")
    summed += ("undeleted", "partial", "phantom")
    last = rows[-1]
    restarts = [float(r["restart s"]) for r in rows]
    return [
        f"{len(rows)} cycles",
        *(sum(int(r[k]) for r in rows) for k in summed),
        last["SQL products"],
        last["SQL images"],
        sum(int(r["rows without blob"]) for r in rows),
        last["unreferenced blobs"],
        f"{sum(r['index = SQL'] == 'yes' for r in rows)}/{len(rows)}",
        f"{sum(restarts) / len(restarts):.1f} mean",
    ]


def report(rows: list[dict[str, object]]) -> str:
    """Per cycle, then the totals (SQL columns and unreferenced blobs: after the last restart)."""
    return "\n\n".join(
        (
            table(HEADERS, [[row[h] for h in HEADERS] for row in rows]),
            "Totals (SQL columns and unreferenced blobs: after the last restart)",
            table(HEADERS, [totals(rows)]),
        )
    )


def problems(rows: list[dict[str, object]]) -> list[str]:
    """What the drill counts as a failure: anything acknowledged lost or half-written, a row
    without its blob, an index that disagrees with SQL."""
    found = []
    for row in rows:
        for column in ("lost", "undeleted", "partial", "phantom", "rows without blob"):
            if row[column]:
                found.append(f"cycle {row['cycle']}: {column} {row[column]}")
        if row["index = SQL"] != "yes":
            found.append(f"cycle {row['cycle']}: the index does not count what SQL holds")
    return found
