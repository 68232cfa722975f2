"""one embedding set per (image, model), float16 vectors, change log replicas follow

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Moves `reference_images.embedding` (+ model_id, shard, views) and `reference_views` into
`embeddings` (float32 -> float16), replaces `shard_versions` by `log_heads` + `change_log`, and
adds `replicas` (heartbeats). On SQLite the foreign key from `embeddings` is added last: the
batch rebuild of `reference_images` drops the old table, and with foreign keys on, that drop
would cascade into any table already pointing at it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BATCH = 2000

embeddings = sa.table(
    "embeddings",
    sa.column("model_id", sa.String),
    sa.column("image_id", sa.Integer),
    sa.column("code", sa.Integer),
    sa.column("shard", sa.Integer),
    sa.column("vector", sa.LargeBinary),
    sa.column("views", sa.String),
)


def _keyset(conn: sa.Connection, sql: str, key: int = 0) -> Iterator[list[sa.Row]]:
    """Rows of `sql` (ordered by its first column, `> :after`) in batches, without a cursor
    left open across the inserts made between batches."""
    after = -1
    while True:
        rows = conn.execute(sa.text(sql), {"after": after, "n": BATCH}).all()
        if not rows:
            return
        yield rows
        after = rows[-1][key]


def _half(blob: bytes) -> bytes:
    return np.frombuffer(blob, dtype="<f4").astype("<f2").tobytes()


def _single(blob: bytes) -> bytes:
    return np.frombuffer(blob, dtype="<f2").astype("<f4").tobytes()


def upgrade() -> None:
    conn = op.get_bind()
    op.create_table(
        "embeddings",
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("image_id", BigId, nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("views", sa.String(length=32), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("model_id", "image_id", "code"),
    )
    for rows in _keyset(
        conn,
        "SELECT id, model_id, shard, views, embedding FROM reference_images "
        "WHERE id > :after ORDER BY id LIMIT :n",
    ):
        conn.execute(
            embeddings.insert(),
            [
                {"model_id": m, "image_id": i, "code": 0, "shard": s, "vector": _half(e), "views": v}
                for i, m, s, v, e in rows
            ],
        )
    # reference_views is keyed (image_id, code): page by image id, whole images per batch.
    for rows in _keyset(
        conn,
        "SELECT image_id, code, model_id, shard, embedding FROM reference_views WHERE image_id IN "
        "(SELECT DISTINCT image_id FROM reference_views WHERE image_id > :after "
        "ORDER BY image_id LIMIT :n) ORDER BY image_id, code",
    ):
        conn.execute(
            embeddings.insert(),
            [
                {"model_id": m, "image_id": i, "code": c, "shard": s, "vector": _half(e), "views": ""}
                for i, c, m, s, e in rows
            ],
        )
    op.create_table(
        "log_heads",
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("pruned_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model_id"),
    )
    op.create_table(
        "change_log",
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("vector_ids", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "seq"),
    )
    op.create_index("ix_change_log_created_at", "change_log", ["created_at"])
    op.create_table(
        "replicas",
        sa.Column("replica_id", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("replica_id"),
    )
    # Every model with vectors starts its log at 0: replicas of it rebuild once from SQL (the
    # shard file layout moved to v3, so no old file is trusted) and follow the log from there.
    conn.execute(
        sa.text(
            "INSERT INTO log_heads (model_id, last_seq, pruned_seq) "
            "SELECT DISTINCT model_id, 0, 0 FROM embeddings"
        )
    )
    op.drop_index("ix_reference_views_model_shard", table_name="reference_views")
    op.drop_table("reference_views")
    op.drop_table("shard_versions")
    with op.batch_alter_table("reference_images") as batch:
        batch.drop_index("ix_reference_images_model_shard")
        for column in ("embedding", "model_id", "shard", "views"):
            batch.drop_column(column)
    with op.batch_alter_table("embeddings") as batch:
        batch.create_foreign_key(
            "fk_embeddings_image_id",
            "reference_images",
            ["image_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index("ix_embeddings_image_id", ["image_id"])


def downgrade() -> None:
    """Back to one vector per image: each image keeps the vector of the model most images have
    (else of any model it has); images with none cannot exist under 0002 and are removed."""
    conn = op.get_bind()
    with op.batch_alter_table("reference_images") as batch:
        batch.add_column(sa.Column("embedding", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("model_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("shard", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("views", sa.String(length=32), server_default="", nullable=False))
    op.create_table(
        "shard_versions",
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "shard"),
    )
    op.create_table(
        "reference_views",
        sa.Column("image_id", BigId, nullable=False),  # foreign key added last, as above
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("image_id", "code"),
    )
    ranked = [
        m
        for (m,) in conn.execute(
            sa.text(
                "SELECT model_id FROM embeddings WHERE code = 0 "
                "GROUP BY model_id ORDER BY count(*) DESC, model_id"
            )
        )
    ]
    rank = {m: i for i, m in enumerate(ranked)}
    for rows in _keyset(
        conn,
        "SELECT image_id, code, model_id, shard, vector, views FROM embeddings WHERE image_id IN "
        "(SELECT DISTINCT image_id FROM embeddings WHERE image_id > :after "
        "ORDER BY image_id LIMIT :n) ORDER BY image_id, code",
    ):
        chosen: dict[int, str] = {}
        for image_id, code, model_id, *_ in rows:
            if code == 0 and rank[model_id] < rank.get(chosen.get(image_id, ""), len(rank)):
                chosen[image_id] = model_id
        for image_id, code, model_id, shard, vector, views in rows:
            if chosen.get(image_id) != model_id:
                continue
            if code == 0:
                conn.execute(
                    sa.text(
                        "UPDATE reference_images SET embedding = :e, model_id = :m, shard = :s, "
                        "views = :v WHERE id = :i"
                    ),
                    {"e": _single(vector), "m": model_id, "s": shard, "v": views, "i": image_id},
                )
            else:
                conn.execute(
                    sa.text(
                        "INSERT INTO reference_views (image_id, code, embedding, model_id, shard) "
                        "VALUES (:i, :c, :e, :m, :s)"
                    ),
                    {"i": image_id, "c": code, "e": _single(vector), "m": model_id, "s": shard},
                )
    conn.execute(sa.text("DELETE FROM reference_images WHERE embedding IS NULL"))
    conn.execute(
        sa.text(
            "INSERT INTO shard_versions (model_id, shard, version) "
            "SELECT DISTINCT model_id, shard, 1 FROM reference_images"
        )
    )
    op.drop_table("embeddings")
    op.drop_table("change_log")
    op.drop_table("log_heads")
    op.drop_table("replicas")
    with op.batch_alter_table("reference_images") as batch:
        batch.alter_column("embedding", nullable=False)
        batch.alter_column("model_id", nullable=False)
        batch.alter_column("shard", nullable=False)
        batch.create_index("ix_reference_images_model_shard", ["model_id", "shard"])
    with op.batch_alter_table("reference_views") as batch:
        batch.create_foreign_key(
            "fk_reference_views_image_id",
            "reference_images",
            ["image_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index("ix_reference_views_model_shard", ["model_id", "shard"])
