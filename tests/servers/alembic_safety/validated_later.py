"""a check on orders added NOT VALID and validated afterwards

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
    op.execute("SET lock_timeout = '2s'")
    op.create_check_constraint(
        "orders_total_positive", "orders", "total_cents >= 0", postgresql_not_valid=True
    )
    op.execute("ALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive")


def downgrade() -> None:
    raise NotImplementedError("the safety tests never downgrade")
