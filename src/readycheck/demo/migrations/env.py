"""Alembic environment of the demo's orders-api: migrate the database at sqlalchemy.url.

``readycheck demo`` runs ``alembic upgrade`` through Alembic's API with an in-memory
Config (no alembic.ini); the alembic.head check only reads the scripts, never this file.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

# NullPool: the connection closes when the upgrade is done, and no idle session of ours
# is left for postgres.pool to count.
connectable = engine_from_config(
    context.config.get_section(context.config.config_ini_section, {}),
    prefix="sqlalchemy.",
    poolclass=pool.NullPool,
)
with connectable.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
