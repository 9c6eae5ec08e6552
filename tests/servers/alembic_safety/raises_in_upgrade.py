"""a revision whose upgrade() reads a setting that is not there

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
    settings: dict[str, str] = {}
    op.add_column("orders", sa.Column(settings["column"], sa.Text))


def downgrade() -> None:
    raise NotImplementedError("the safety tests never downgrade")
