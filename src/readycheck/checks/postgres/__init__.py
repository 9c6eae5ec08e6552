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

The DSN may be written as libpq takes it (``postgresql://`` or ``postgres://`` URL,
``key=value`` pairs) or pasted from the application's SQLAlchemy settings
(``postgresql+psycopg://``, ``+psycopg2``, ``+asyncpg``): the driver part is removed and
the evidence says so once. ``readycheck validate`` reads each DSN with libpq's own parser,
connecting to nothing, and names the profile line of one libpq would refuse (malformed,
an unknown keyword, a port that is not a number), never showing its password.

Importing these modules imports no driver: psycopg is imported when a check runs
(``session.py``), and by validation only for libpq's parser, when a profile has a DSN.
"""

from __future__ import annotations

from pydantic import Field

from readycheck.checks.postgres.dsn import PostgresDsn
from readycheck.params import CheckParams, PositiveDuration
from readycheck.units import Duration


class PostgresParams(CheckParams):
    """The connection parameters of every PostgreSQL check type."""

    dsn: PostgresDsn = Field(
        description="libpq connection string, URL (postgresql://user:password@host:5432/db) "
        "or key=value form, or the application's SQLAlchemy URL (postgresql+psycopg://, "
        "+psycopg2, +asyncpg: the driver part is removed). Checked as libpq parses it when "
        "the profile loads; its password never appears in any output.",
    )
    connect_timeout: PositiveDuration = Field(
        Duration("5s"),
        description="Give up connecting after this long and FAIL (libpq itself waits at "
        "least 2s; a shorter value is enforced by readycheck).",
    )
