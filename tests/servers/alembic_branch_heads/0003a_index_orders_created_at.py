"""index orders.created_at (one of two heads on top of 0002)

Revision ID: 0003a
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003a"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_orders_created_at", "orders", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_orders_created_at", table_name="orders")
