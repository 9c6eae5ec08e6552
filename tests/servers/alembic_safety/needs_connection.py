"""archive old orders, counting them first

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
    connection = op.get_bind()
    count = connection.execute(sa.text("SELECT count(*) FROM orders")).scalar()
    if count:
        op.execute("UPDATE orders SET total_cents = total_cents + 0")


def downgrade() -> None:
    raise NotImplementedError("the safety tests never downgrade")
