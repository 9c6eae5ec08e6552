"""seed one account and three orders, so the API has something to list

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute(
        "INSERT INTO accounts (id, email) OVERRIDING SYSTEM VALUE VALUES (1, 'ada@example.com')"
    )
    op.execute(
        "INSERT INTO orders (id, account_id, status, total_cents) VALUES"
        " ('6f1c2b8e-0d1a-4c3e-9a57-1b2f3c4d5e01', 1, 'paid', 4200),"
        " ('6f1c2b8e-0d1a-4c3e-9a57-1b2f3c4d5e02', 1, 'shipped', 1999),"
        " ('6f1c2b8e-0d1a-4c3e-9a57-1b2f3c4d5e03', 1, 'new', 750)"
    )


def downgrade() -> None:
    op.execute("DELETE FROM orders WHERE account_id = 1")
    op.execute("DELETE FROM accounts WHERE id = 1")
