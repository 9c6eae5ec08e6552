"""Throwaway PostgreSQL for tests: the cluster is readycheck.demo.postgres.PostgresServer
(loopback, scram-sha-256, roles ``postgres`` and ``app``; read its docstring for which
binaries it runs), plus a fresh database per test.

Fixtures:

- ``postgres_server`` (session): one cluster for the whole run. Passwords are random per
  run, so a test can assert that one never shows up in output. Stopped, and its temp dir
  removed, at session end or interpreter exit.
- ``pg_database`` (function): a database of its own for one test, owned by ``app``, dropped
  afterwards with its connections terminated.
- ``postgres_replica`` (session): a streaming standby of ``postgres_server``
  (``pg_is_in_recovery()`` is true), same roles and passwords; the ``app`` database is there,
  and so is what the primary writes, a moment later. Started only by the tests that use it.
- ``postgres_tls_server`` (session): a cluster of its own with SSL on; ``.tls.ca_file`` is
  the CA to verify it with (``sslmode=verify-full``). Skipped where the server binaries are
  built without SSL (pgserver's wheel).

Each is stopped, and its temp dir removed, at session end or interpreter exit.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from psycopg import sql
from psycopg.abc import Params

from readycheck.demo import postgres
from readycheck.demo.postgres import (
    APP_USER,
    SUPERUSER,
    Statement,
    execute,
    find_postgres_bindir,
    ssl_supported,
)

__all__ = [
    "PgDatabase",
    "PostgresServer",
    "pg_database",
    "postgres_replica",
    "postgres_server",
    "postgres_tls_server",
]


class PostgresServer(postgres.PostgresServer):
    """The demo's cluster, with a database per test."""

    _database_count = 0

    def create_database(self, hint: str = "db", *, owner: str = APP_USER) -> PgDatabase:
        """A new, empty database owned by ``owner``; ``hint`` goes into its name."""
        self._database_count += 1
        slug = re.sub(r"[^a-z0-9]+", "_", hint.lower()).strip("_")[:40]
        name = f"t{self._database_count}_{slug}_{secrets.token_hex(3)}"
        self.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
        return PgDatabase(server=self, name=name, owner=owner)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, terminating its connections first (WITH FORCE, PostgreSQL 13+)."""
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@dataclass(frozen=True)
class PgDatabase:
    """One test's own database on the session's server."""

    server: PostgresServer
    name: str
    owner: str

    @property
    def dsn(self) -> str:
        """libpq URL as the owner (``app``), with its password."""
        return self.server.dsn(user=self.owner, dbname=self.name)

    @property
    def superuser_dsn(self) -> str:
        return self.server.dsn(user=SUPERUSER, dbname=self.name)

    def execute(
        self, query: Statement, params: Params | None = None, *, as_superuser: bool = False
    ) -> list[tuple[Any, ...]]:
        """Run one statement in this database (as the owner by default) and return its rows."""
        return execute(self.superuser_dsn if as_superuser else self.dsn, query, params)


_running: PostgresServer | None = None


def shared_postgres_server() -> PostgresServer:
    """The run's one server, started on first use.

    Shared at module level so that the fixture, if registered twice (a conftest plugin and
    an import into a test module), still starts one cluster, not two.
    """
    global _running
    if _running is None or not _running.process.is_running():
        _running = PostgresServer.start(label="test")
    return _running


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = shared_postgres_server()
    yield server
    server.stop()


@pytest.fixture
def pg_database(
    postgres_server: PostgresServer, request: pytest.FixtureRequest
) -> Iterator[PgDatabase]:
    database = postgres_server.create_database(request.node.name)
    yield database
    postgres_server.drop_database(database.name)


@pytest.fixture(scope="session")
def postgres_replica(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    replica = postgres_server.start_replica(label="test")
    yield replica
    replica.stop()


@pytest.fixture(scope="session")
def postgres_tls_server() -> Iterator[PostgresServer]:
    bindir = find_postgres_bindir()
    if not ssl_supported(bindir):
        pytest.skip(f"the PostgreSQL in {bindir} is built without SSL")
    server = PostgresServer.start(label="test-tls", tls=True)
    yield server
    server.stop()
