"""PostgreSQL: connectivity, pool headroom, schema objects, indexes, SQL assertions,
replication and backups.

Every check opens its own session, and every session is safe to point at production:
read-only (``default_transaction_read_only`` in the startup options: psycopg's
``read_only`` does nothing in autocommit), with ``statement_timeout`` and ``lock_timeout``
taken from the check's remaining time, a connect timeout, and
``application_name=readycheck``. Behind a pooler that refuses startup options
(PgBouncer), each query runs in a read-only transaction with ``SET LOCAL`` timeouts
instead, and the evidence says so. The DSN's password appears in no output, even where
libpq echoes the connection string in an error.

psycopg is imported when a check runs (``session.py``), never by the parameter models
here, so ``readycheck validate`` stays fast.
"""

from __future__ import annotations

from pydantic import Field

from readycheck.params import CheckParams, PositiveDuration, SecretDsn
from readycheck.units import Duration


class PostgresParams(CheckParams):
    """The connection parameters of every PostgreSQL check type."""

    dsn: SecretDsn = Field(
        description="libpq connection string, URL (postgresql://user:password@host:5432/db) "
        "or key=value form; its password never appears in any output.",
    )
    connect_timeout: PositiveDuration = Field(
        Duration("5s"),
        description="Give up connecting after this long and FAIL (libpq itself waits at "
        "least 2s; a shorter value is enforced by readycheck).",
    )
