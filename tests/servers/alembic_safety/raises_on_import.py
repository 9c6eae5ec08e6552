"""a revision that fails as soon as it is imported

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"

raise RuntimeError("APP_SETTINGS is not set")


def upgrade() -> None:
    op.execute("SELECT 1")
