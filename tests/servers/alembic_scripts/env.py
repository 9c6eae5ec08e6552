"""Alembic environment for the test script folders: migrate the database at sqlalchemy.url.

Only ``alembic upgrade``/``downgrade`` run this file; reading the script folder
(ScriptDirectory, heads, history) does not.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

url = context.config.get_main_option("sqlalchemy.url")
if url is None:
    raise RuntimeError("set sqlalchemy.url (postgresql+psycopg://...) in the Alembic Config")

if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    # NullPool: the connection is closed when we are done, so the test's database can be
    # dropped straight away.
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
