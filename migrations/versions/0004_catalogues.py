"""catalogue membership (product sets) and the epoch that invalidates cached filters

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_catalogues",
        sa.Column(
            "product_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("products.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("catalogue", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("product_id", "catalogue"),
    )
    op.create_index(
        "ix_product_catalogues_catalogue", "product_catalogues", ["catalogue", "product_id"]
    )
    op.create_table(
        "catalogue_epochs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("catalogue_epochs")
    op.drop_index("ix_product_catalogues_catalogue", table_name="product_catalogues")
    op.drop_table("product_catalogues")
