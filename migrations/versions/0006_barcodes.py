"""barcodes: GTINs of products (unique across products), and the codes a kept photo showed

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_barcodes",
        sa.Column("gtin", sa.String(length=14), nullable=False),
        sa.Column(
            "product_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("products.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("gtin"),
    )
    op.create_index("ix_product_barcodes_product_id", "product_barcodes", ["product_id"])
    op.add_column("review_items", sa.Column("barcodes", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("review_items", "barcodes")
    op.drop_index("ix_product_barcodes_product_id", table_name="product_barcodes")
    op.drop_table("product_barcodes")
