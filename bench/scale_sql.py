"""Set-up for bench/scale.py: a fresh PostgreSQL database holding N synthetic reference vectors.

Rows go in with COPY (set-up, not measured): one product per 4 images, each image with the
shipped model's two degraded views (codes 4 and 5, app/encoder/views.py), so N vectors are
N / 3 reference images, as the service would store them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import numpy as np
import psycopg
from tqdm import tqdm

from app.db.migrate import upgrade_to_head
from tests.support.databases import create_pg_database, drop_pg_database

CODES = (0, 4, 5)  # the image itself, jpeg25, dark
IMAGES_PER_PRODUCT = 4


@contextmanager
def fresh_database() -> Iterator[str]:
    """A throw-away PostgreSQL database at the schema's head (the suite's helpers, so
    RETAILKLIP_TEST_PG applies here too)."""
    url = create_pg_database(prefix="retailklip_scale")
    try:
        upgrade_to_head(url)
        yield url
    finally:
        drop_pg_database(url)


def layout(n_vectors: int, shard_capacity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per vector: image id (1-based), view code, shard, in the row order of the vectors."""
    row = np.arange(n_vectors)
    image = row // len(CODES) + 1
    code = np.asarray(CODES)[row % len(CODES)]
    return image, code, (image - 1) // shard_capacity


def bulk_load(url: str, vectors: np.ndarray, model_id: str, shard_capacity: int) -> None:
    image, code, shard = layout(len(vectors), shard_capacity)
    n_images = int(image[-1])
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        now = datetime.now(UTC)
        with cur.copy(
            "COPY products (id, sku, name, metadata, created_at, updated_at) FROM STDIN"
        ) as copy:
            for pid in range(1, n_images // IMAGES_PER_PRODUCT + 2):
                copy.write_row((pid, f"sku-{pid:07d}", f"product {pid}", "{}", now, now))
        cols = "id, product_id, sha256, blob_key, image_format, width, height, created_at"
        own = np.flatnonzero(code == 0)
        with cur.copy(f"COPY reference_images ({cols}) FROM STDIN") as copy:
            for i in tqdm(own, desc="COPY images", leave=False, mininterval=2):
                img = int(image[i])
                sha = hashlib.sha256(img.to_bytes(8, "little")).hexdigest()
                pid = (img - 1) // IMAGES_PER_PRODUCT + 1
                copy.write_row((img, pid, sha, sha, "jpeg", 100, 100, now))
        # Every vector, the image's own and its views', as the service stores them: float16.
        with cur.copy(
            "COPY embeddings (model_id, image_id, code, shard, vector, views) FROM STDIN"
        ) as copy:
            for i in tqdm(range(len(vectors)), desc="COPY vectors", leave=False, mininterval=2):
                views = "4,5" if code[i] == 0 else ""
                half = vectors[i].astype("<f2").tobytes()
                copy.write_row((model_id, int(image[i]), int(code[i]), int(shard[i]), half, views))
        for table in ("products", "reference_images"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        # An empty change log at position 0: what a replica reads after the rows.
        cur.execute(
            "INSERT INTO log_heads (model_id, last_seq, pruned_seq) VALUES (%s, 0, 0)",
            (model_id,),
        )
        conn.commit()
