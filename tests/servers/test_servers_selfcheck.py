"""The server fixtures do what later tests rely on: real PostgreSQL and Redis on loopback,
passwords enforced, a database of its own per test, Alembic migrations applied for real."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from alembic.script import ScriptDirectory

from tests.servers.alembic_migrations import (
    BRANCHED_HEADS,
    alembic_config,
    branched_scripts,
    upgrade,
)
from tests.servers.postgres import PgDatabase, PostgresServer
from tests.servers.redis import RedisServer


def _connect(dsn: str) -> psycopg.Connection[tuple[Any, ...]]:
    # passfile=/dev/null: a developer's ~/.pgpass must not supply the password under test.
    return psycopg.connect(dsn, connect_timeout=5, passfile=os.devnull)


@pytest.fixture(autouse=True)
def _no_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)


def test_app_role_logs_in_over_tcp_with_its_password(postgres_server: PostgresServer) -> None:
    with _connect(postgres_server.dsn()) as connection:
        row = connection.execute(
            "SELECT current_user, current_database(), host(inet_server_addr()), rolsuper"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row == ("app", "app", "127.0.0.1", False)


def test_superuser_dsn_connects_as_a_superuser(postgres_server: PostgresServer) -> None:
    with _connect(postgres_server.dsn(user="postgres", dbname="postgres")) as connection:
        row = connection.execute("SELECT current_setting('is_superuser')").fetchone()
    assert row == ("on",)


def test_wrong_password_is_refused(postgres_server: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(postgres_server.dsn(password="not-the-password"))


def test_missing_password_is_refused(postgres_server: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        _connect(postgres_server.dsn(password=""))


@pytest.mark.parametrize("run", ["first", "second"])
def test_each_test_gets_an_empty_database_of_its_own(pg_database: PgDatabase, run: str) -> None:
    # Both runs create the same table: a shared database would make the second one fail.
    pg_database.execute("CREATE TABLE isolation_probe (run text)")
    pg_database.execute("INSERT INTO isolation_probe VALUES (%s)", [run])
    assert pg_database.execute("SELECT run FROM isolation_probe") == [(run,)]
    with _connect(pg_database.dsn) as connection:
        row = connection.execute(
            "SELECT current_user, pg_get_userbyid(datdba) FROM pg_database"
            " WHERE datname = current_database()"
        ).fetchone()
    assert row == ("app", "app")


def test_dropping_a_database_ends_its_connections(postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database("dropped")
    with _connect(database.dsn) as connection:
        postgres_server.drop_database(database.name)
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
    remaining = postgres_server.execute(
        "SELECT count(*) FROM pg_database WHERE datname = %s", [database.name]
    )
    assert remaining == [(0,)]


def _tables_and_indexes(database: PgDatabase) -> set[str]:
    rows = database.execute(
        "SELECT relname FROM pg_class JOIN pg_namespace n ON n.oid = relnamespace"
        " WHERE nspname = 'public' AND relkind IN ('r', 'i')"
    )
    return {name for (name,) in rows}


def test_alembic_upgrade_stops_at_the_requested_revision(pg_database: PgDatabase) -> None:
    upgrade(pg_database.dsn, "0002")
    assert pg_database.execute("SELECT version_num FROM alembic_version") == [("0002",)]
    assert {"accounts", "orders"} <= _tables_and_indexes(pg_database)
    assert "ix_orders_account_id" not in _tables_and_indexes(pg_database)

    upgrade(pg_database.dsn, "heads")
    assert pg_database.execute("SELECT version_num FROM alembic_version") == [("0003",)]
    assert "ix_orders_account_id" in _tables_and_indexes(pg_database)


def test_branched_scripts_fork_into_two_heads(pg_database: PgDatabase, tmp_path: Path) -> None:
    folder = branched_scripts(tmp_path / "migrations")
    script = ScriptDirectory.from_config(alembic_config(pg_database.dsn, folder))
    assert sorted(script.get_heads()) == sorted(BRANCHED_HEADS)

    upgrade(pg_database.dsn, "heads", script_location=folder)
    rows = pg_database.execute("SELECT version_num FROM alembic_version")
    assert sorted(version for (version,) in rows) == sorted(BRANCHED_HEADS)
    assert {"audit_log", "ix_orders_created_at"} <= _tables_and_indexes(pg_database)


def test_redis_accepts_its_passwords(redis_server: RedisServer) -> None:
    for url in (redis_server.url(), redis_server.url(username="app")):
        with redis.Redis.from_url(url, socket_timeout=5) as client:
            assert client.ping() is True


@pytest.mark.parametrize("password", ["", "not-the-password"], ids=["missing", "wrong"])
def test_redis_refuses_a_missing_or_wrong_password(
    redis_server: RedisServer, password: str
) -> None:
    with (
        redis.Redis.from_url(redis_server.url(password=password), socket_timeout=5) as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.ping()
