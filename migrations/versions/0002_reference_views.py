"""derived reference vectors (degraded views of a reference image)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "reference_images",
        sa.Column("views", sa.String(length=32), server_default="", nullable=False),
    )
    op.create_table(
        "reference_views",
        sa.Column(
            "image_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("reference_images.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("image_id", "code"),
    )
    op.create_index(
        "ix_reference_views_model_shard", "reference_views", ["model_id", "shard"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_reference_views_model_shard", table_name="reference_views")
    op.drop_table("reference_views")
    op.drop_column("reference_images", "views")
