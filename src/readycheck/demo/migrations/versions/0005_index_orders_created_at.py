"""index orders by created_at, for the orders list

The revision ``readycheck demo`` leaves pending: the release's new migration, not yet
applied (``readycheck demo --fix`` applies it). It builds the index without
CONCURRENTLY, inside the migration's transaction: writes to orders wait while it builds,
which alembic.safety reports, weighed by the size of orders.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_orders_created_at", "orders", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_orders_created_at", table_name="orders")
