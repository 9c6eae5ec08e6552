"""The PostgreSQL check types against a real server: connectivity, pool, schema, indexes,
the safe session they share, and the faults a production database can show."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from readycheck.checks.postgres.dsn import PostgresDsn
from readycheck.checks.postgres.session import SessionFailure, open_session
from readycheck.context import Context
from readycheck.redact import Redactor
from readycheck.results import Status
from readycheck.units import Duration
from tests.database_checks import run_check, run_everywhere
from tests.servers.alembic_migrations import upgrade
from tests.servers.http import SilentServer
from tests.servers.postgres import PgDatabase, PostgresServer
from tests.servers.process import free_tcp_port


@pytest.fixture(autouse=True)
def _no_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's PGPASSWORD must not supply the password a test leaves out.
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/dev/null")


def _context(tmp_path: Path, seconds: float = 10.0, redactor: Redactor | None = None) -> Context:
    return Context(
        check_id="it",
        environment=None,
        base_dir=tmp_path,
        redactor=redactor or Redactor(),
        logger=logging.getLogger("readycheck.test"),
        deadline=time.monotonic() + seconds,
    )


def _connect(dsn: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(dsn, autocommit=True, connect_timeout=5)


# -- the session every check opens ------------------------------------------------------


@pytest.mark.parametrize(
    "startup_options",
    # False: what a check does behind PgBouncer, which refuses the `options` startup
    # parameter: every query runs in a transaction set read-only, with SET LOCAL timeouts.
    [True, False],
    ids=["startup-options", "set-local-behind-a-pooler"],
)
def test_sessions_are_read_only_bounded_and_named(
    pg_database: PgDatabase, tmp_path: Path, startup_options: bool
) -> None:
    async def probe() -> tuple[tuple[Any, ...], BaseException | None, list[str]]:
        session = await open_session(
            _secret_dsn(pg_database.dsn),
            Duration("5s"),
            _context(tmp_path, 10),
            startup_options=startup_options,
        )
        refused = None
        try:
            row = await session.fetchone(
                "SELECT current_setting('transaction_read_only'),"
                " (SELECT setting::int FROM pg_settings WHERE name = 'statement_timeout'),"
                " (SELECT setting::int FROM pg_settings WHERE name = 'lock_timeout'),"
                " current_setting('application_name')"
            )
            try:
                await session.fetch("CREATE TABLE written_by_a_check (id int)")
            except psycopg.Error as exc:
                refused = exc
            return row, refused, session.notes
        finally:
            await session.close()

    (read_only, statement_ms, lock_ms, application), refused, notes = asyncio.run(probe())
    assert read_only == "on"
    assert isinstance(refused, psycopg.errors.ReadOnlySqlTransaction)
    assert application == "readycheck"
    # Both from the check's remaining time (10 s); a lock wait gives up first, so that
    # the check can still say what holds the lock.
    assert 0 < lock_ms < statement_ms <= 10_000
    if startup_options:
        assert notes == []
    else:
        assert any("PgBouncer" in note and "SET LOCAL" in note for note in notes)


def test_the_dsn_own_options_are_kept(pg_database: PgDatabase, tmp_path: Path) -> None:
    pg_database.execute("CREATE SCHEMA billing")
    dsn = pg_database.dsn + "?options=-csearch_path%3Dbilling"

    async def probe() -> tuple[Any, ...]:
        session = await open_session(_secret_dsn(dsn), Duration("5s"), _context(tmp_path))
        try:
            return await session.fetchone(
                "SELECT current_setting('search_path'),"
                " current_setting('default_transaction_read_only')"
            )
        finally:
            await session.close()

    assert asyncio.run(probe()) == ("billing", "on")


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("host=127.0.0.1 password=canary-{token} user", 'a key=value setting lacks its "="'),
        ("postgresql://app:canary {token}@127.0.0.1/app", "a URL may not contain spaces"),
        ("host=127.0.0.1 password='canary-{token}", "a quoted value is not closed"),
    ],
)
def test_dsn_parse_errors_are_described_without_echoing_the_dsn(
    tmp_path: Path, dsn: str, problem: str
) -> None:
    # The check's own words, before any redactor: libpq's message echoes the string.
    token = secrets.token_hex(6)
    secret = dsn.format(token=token)

    async def attempt() -> SessionFailure:
        with pytest.raises(SessionFailure) as raised:
            await open_session(_secret_dsn(secret), Duration("2s"), _context(tmp_path))
        return raised.value

    failure = asyncio.run(attempt())
    assert failure.outcome.status is Status.ERROR
    assert problem in failure.outcome.summary
    shown = " ".join([failure.outcome.summary, *failure.outcome.evidence, str(failure)])
    assert token not in shown


def _secret_dsn(value: str) -> PostgresDsn:
    return PostgresDsn(value)


# -- postgres.connectivity --------------------------------------------------------------


def test_connectivity_passes_with_version_latency_database_and_user_in_evidence(
    pg_database: PgDatabase, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    major = postgres_server.server_version_num // 10000
    result = run_check(
        tmp_path, "postgres.connectivity", {"dsn": pg_database.dsn, "min_version": major}
    )
    assert result.status is Status.PASS, result.summary
    assert result.summary.startswith(f"PostgreSQL {major}.")
    assert f"database {pg_database.name}, user app" in result.evidence
    assert "SSL not in use" in result.evidence
    assert "role: primary" in result.evidence
    assert result.metrics["server_version_num"] == postgres_server.server_version_num
    assert result.metrics["latency_ms"] > 0


def test_an_older_server_than_min_version_fails(
    pg_database: PgDatabase, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    major = postgres_server.server_version_num // 10000
    result = run_check(
        tmp_path, "postgres.connectivity", {"dsn": pg_database.dsn, "min_version": 99}
    )
    assert result.status is Status.FAIL
    assert result.summary == f"PostgreSQL {major} is older than the required 99"
    assert result.remediation == "Upgrade the server to PostgreSQL 99 or later."


def test_a_round_trip_over_max_latency_fails(pg_database: PgDatabase, tmp_path: Path) -> None:
    result = run_check(
        tmp_path, "postgres.connectivity", {"dsn": pg_database.dsn, "max_latency": "0ms"}
    )
    assert result.status is Status.FAIL
    assert "over the 0s allowed" in result.summary


def test_require_ssl_fails_on_an_unencrypted_connection(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = run_check(
        tmp_path, "postgres.connectivity", {"dsn": pg_database.dsn, "require_ssl": True}
    )
    assert result.status is Status.FAIL
    assert result.summary == "the connection is not encrypted (require_ssl)"
    assert "sslmode=require" in (result.remediation or "")


def test_require_ssl_passes_over_tls_naming_the_protocol(
    postgres_tls_server: PostgresServer, tmp_path: Path
) -> None:
    assert postgres_tls_server.tls is not None
    dsn = postgres_tls_server.dsn(
        sslmode="verify-full", sslrootcert=str(postgres_tls_server.tls.ca_file)
    )
    result = run_check(tmp_path, "postgres.connectivity", {"dsn": dsn, "require_ssl": True})
    assert result.status is Status.PASS, result.summary
    assert [line for line in result.evidence if line.startswith("SSL")] in (
        ["SSL in use: TLSv1.2"],
        ["SSL in use: TLSv1.3"],
    )


def test_a_replica_fails_where_the_primary_is_expected(
    postgres_replica: PostgresServer, tmp_path: Path
) -> None:
    # expect_primary is on unless the profile turns it off.
    result = run_check(tmp_path, "postgres.connectivity", {"dsn": postgres_replica.dsn()})
    assert result.status is Status.FAIL
    assert result.summary == "the server is a replica in recovery, not the primary"
    assert "role: replica (in recovery)" in result.evidence
    assert result.remediation == "Point the DSN at the primary, not a replica."


def test_a_replica_passes_when_the_primary_is_not_expected(
    postgres_replica: PostgresServer, tmp_path: Path
) -> None:
    result = run_check(
        tmp_path,
        "postgres.connectivity",
        {"dsn": postgres_replica.dsn(), "expect_primary": False},
    )
    assert result.status is Status.PASS, result.summary
    assert "role: replica (in recovery)" in result.evidence


def test_nothing_listening_fails_at_once(tmp_path: Path) -> None:
    port = free_tcp_port()
    started = time.monotonic()
    result = run_check(
        tmp_path,
        "postgres.connectivity",
        {"dsn": f"postgresql://app:pw@127.0.0.1:{port}/app"},
        timeout="60s",
    )
    assert result.status is Status.FAIL
    assert result.summary == f"nothing is listening at 127.0.0.1:{port} (connection refused)"
    assert time.monotonic() - started < 30  # not the check's 60 s timeout


@pytest.mark.parametrize(("connect_timeout", "shown"), [("2s", "2s"), ("500ms", "500ms")])
def test_a_server_that_never_answers_fails_within_connect_timeout(
    tmp_path: Path, connect_timeout: str, shown: str
) -> None:
    with SilentServer() as silent:
        started = time.monotonic()
        result = run_check(
            tmp_path,
            "postgres.connectivity",
            {
                "dsn": f"postgresql://app:pw@127.0.0.1:{silent.port}/app",
                "connect_timeout": connect_timeout,
            },
            timeout="60s",
        )
        elapsed = time.monotonic() - started
    assert result.status is Status.FAIL  # not ERROR "timed out after 60s"
    assert result.summary == (
        f"127.0.0.1:{silent.port} did not answer within {shown} (connect_timeout)"
    )
    assert elapsed < 30


def test_a_wrong_password_fails_authentication_and_shows_nowhere(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    password = f"canary-{secrets.token_hex(8)}"
    run = run_everywhere(
        tmp_path,
        "postgres.connectivity",
        {"dsn": "${env:DATABASE_URL}"},
        environ={"DATABASE_URL": postgres_server.dsn(password=password)},
    )
    assert run.exit_code == 1
    assert run.result["status"] == "FAIL"
    assert run.result["summary"] == (
        f"authentication failed for user app at 127.0.0.1:{postgres_server.port}"
    )
    assert password not in run.text


def test_a_missing_password_fails_authentication(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    result = run_check(tmp_path, "postgres.connectivity", {"dsn": postgres_server.dsn(password="")})
    assert result.status is Status.FAIL
    assert result.summary == (
        f"authentication failed: 127.0.0.1:{postgres_server.port} asks for a password "
        "and the DSN gives none"
    )


def test_a_database_that_does_not_exist_fails_saying_so(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    result = run_check(
        tmp_path,
        "postgres.schema",
        {"dsn": postgres_server.dsn(dbname="no_such_db"), "tables": ["accounts"]},
    )
    assert result.status is Status.FAIL
    assert result.summary == (
        f"database no_such_db does not exist on 127.0.0.1:{postgres_server.port}"
    )


# -- postgres.pool ----------------------------------------------------------------------


def _pool(tmp_path: Path, dsn: str, **params: Any) -> Any:
    return run_check(tmp_path, "postgres.pool", {"dsn": dsn, **params})


def _server_capacity(postgres_server: PostgresServer) -> int:
    ((max_connections, superuser_reserved, reserved),) = postgres_server.execute(
        "SELECT current_setting('max_connections')::int,"
        " current_setting('superuser_reserved_connections')::int,"
        " coalesce(current_setting('reserved_connections', true), '0')::int"
    )
    return int(max_connections - superuser_reserved - reserved)


def test_a_pool_that_fits_passes_with_the_arithmetic_in_evidence(
    pg_database: PgDatabase, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    usable = _server_capacity(postgres_server)
    result = _pool(tmp_path, pg_database.dsn, pool_size=5, max_overflow=5, workers=2)
    assert result.status is Status.PASS, result.summary
    assert result.metrics["usable"] == usable
    assert result.metrics["required"] == 20
    assert result.metrics["headroom"] == int(0.8 * usable) - result.metrics["backends"] - 20
    assert "required: the application's pools may open (5 + 5) x 2 workers = 20" in (
        result.evidence
    )
    assert any(line.endswith(f"= {usable} usable") for line in result.evidence)


def test_a_pool_that_does_not_fit_fails(pg_database: PgDatabase, tmp_path: Path) -> None:
    result = _pool(tmp_path, pg_database.dsn, pool_size=20, max_overflow=10, workers=4)
    assert result.status is Status.FAIL
    assert re.search(r"other sessions? \+ 120 required exceed the", result.summary)
    assert result.metrics["headroom"] < 0
    assert "max_connections" in (result.remediation or "")


def test_max_usage_scales_what_is_allowed(pg_database: PgDatabase, tmp_path: Path) -> None:
    generous = _pool(tmp_path, pg_database.dsn, pool_size=10, max_overflow=0, max_usage=1.0)
    tight = _pool(tmp_path, pg_database.dsn, pool_size=10, max_overflow=0, max_usage=0.05)
    assert generous.status is Status.PASS
    assert tight.status is Status.FAIL


def test_other_sessions_count_as_backends_even_when_their_details_are_hidden(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    before = _pool(tmp_path, pg_database.dsn, pool_size=1)
    # Two sessions of the same role (visible) and two of the superuser (hidden from app).
    held = [_connect(pg_database.dsn) for _ in range(2)]
    held += [_connect(pg_database.superuser_dsn) for _ in range(2)]
    try:
        after = _pool(tmp_path, pg_database.dsn, pool_size=1)
    finally:
        for connection in held:
            connection.close()
    assert after.metrics["backends"] - before.metrics["backends"] == 4
    assert any("hidden from app" in line for line in after.evidence)


@pytest.fixture
def idle_transaction(pg_database: PgDatabase) -> Iterator[int]:
    """A session of the application left idle in a transaction; yields its pid."""
    connection = psycopg.connect(pg_database.dsn, application_name="billing-worker")
    connection.execute("SELECT 1")  # opens the transaction (psycopg is not autocommit here)
    try:
        yield connection.info.backend_pid
    finally:
        connection.rollback()
        connection.close()


def test_sessions_idle_in_transaction_warn(
    pg_database: PgDatabase, idle_transaction: int, tmp_path: Path
) -> None:
    time.sleep(0.3)
    result = _pool(tmp_path, pg_database.dsn, pool_size=1, idle_in_transaction_after="100ms")
    assert result.status is Status.WARN
    assert result.summary == "1 session idle in transaction for over 100ms"
    assert result.metrics["idle_in_transaction"] == 1
    assert any(
        line.startswith(f"pid {idle_transaction} (app, billing-worker) idle in transaction for")
        for line in result.evidence
    )


def test_long_transactions_warn(
    pg_database: PgDatabase, idle_transaction: int, tmp_path: Path
) -> None:
    time.sleep(0.3)
    result = _pool(
        tmp_path,
        pg_database.dsn,
        pool_size=1,
        idle_in_transaction_after="1h",
        long_transaction_after="100ms",
    )
    assert result.status is Status.WARN
    assert result.summary == "1 transaction open for over 100ms"
    assert result.metrics["long_transactions"] == 1


def test_probe_connections_opens_them_at_once_and_reports_the_slowest(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = _pool(tmp_path, pg_database.dsn, pool_size=5, probe_connections=6)
    assert result.status is Status.PASS, result.summary
    assert result.metrics["probe_opened"] == 6
    assert result.metrics["probe_slowest_ms"] > 0
    assert any(
        line.startswith("probe: opened 6 of 6 connections at once; the slowest took")
        for line in result.evidence
    )


def test_a_probe_larger_than_the_free_connections_is_refused(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = _pool(tmp_path, pg_database.dsn, pool_size=1, max_overflow=0, probe_connections=500)
    assert result.status is Status.FAIL
    assert "cannot probe 500 connections: only" in result.summary


def test_probe_connections_the_server_refuses_fail(
    postgres_server: PostgresServer, pg_database: PgDatabase, tmp_path: Path
) -> None:
    role = f"limited_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    postgres_server.execute(
        sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 3 PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
    try:
        dsn = postgres_server.dsn(user=role, password=password, dbname=pg_database.name)
        # The check's own session takes one of the three: at most two probes open. (Two
        # backends starting at once may both count each other and both give up: fewer.)
        result = _pool(tmp_path, dsn, pool_size=1, max_overflow=0, probe_connections=4)
    finally:
        postgres_server.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert result.status is Status.FAIL
    opened = int(result.metrics["probe_opened"])
    assert opened <= 2
    assert f"only {opened} of 4 probe connections opened" in result.summary
    assert any("its connection slots are all taken" in line for line in result.evidence)


# -- postgres.schema --------------------------------------------------------------------


def test_schema_passes_when_every_object_exists(pg_database: PgDatabase, tmp_path: Path) -> None:
    upgrade(pg_database.dsn, "heads")
    pg_database.execute("CREATE VIEW recent_orders AS SELECT * FROM orders")
    pg_database.execute(
        "CREATE FUNCTION order_total(bigint) RETURNS bigint LANGUAGE sql AS 'SELECT $1'"
    )
    result = run_check(
        tmp_path,
        "postgres.schema",
        {
            "dsn": pg_database.dsn,
            "tables": ["accounts", "orders"],
            "views": ["recent_orders"],
            "functions": ["order_total"],
            "extensions": ["plpgsql"],
        },
    )
    assert result.status is Status.PASS, result.summary
    assert result.summary == "all 5 required objects exist in public"
    assert "tables present: accounts, orders" in result.evidence
    assert any(line.startswith("extensions installed: plpgsql ") for line in result.evidence)


def test_schema_fails_naming_each_missing_object(pg_database: PgDatabase, tmp_path: Path) -> None:
    upgrade(pg_database.dsn, "0001")
    result = run_check(
        tmp_path,
        "postgres.schema",
        {
            "dsn": pg_database.dsn,
            "tables": ["accounts", "orders"],
            "views": ["recent_orders", "accounts"],
            "functions": ["order_total"],
            "extensions": ["pgcrypto"],
        },
    )
    assert result.status is Status.FAIL
    assert result.summary.startswith("5 of 6 required objects missing: table public.orders;")
    assert result.evidence[:5] == [
        "missing table public.orders",
        "missing view public.recent_orders",
        "public.accounts is a table, not a view",
        "missing function public.order_total",
        "missing extension pgcrypto",
    ]
    assert result.metrics["missing"] == 5


def test_a_schema_that_does_not_exist_fails(pg_database: PgDatabase, tmp_path: Path) -> None:
    result = run_check(
        tmp_path,
        "postgres.schema",
        {"dsn": pg_database.dsn, "schema": "billing", "tables": ["invoices"]},
    )
    assert result.status is Status.FAIL
    assert result.evidence[:2] == [
        "schema billing does not exist",
        "missing table billing.invoices",
    ]


# -- postgres.indexes -------------------------------------------------------------------


@pytest.fixture
def orders_db(pg_database: PgDatabase) -> PgDatabase:
    """The test scripts' schema at head: accounts, orders, ix_orders_account_id."""
    upgrade(pg_database.dsn, "heads")
    return pg_database


def _indexes(tmp_path: Path, database: PgDatabase, *specs: dict[str, Any], **params: Any) -> Any:
    return run_check(
        tmp_path, "postgres.indexes", {"dsn": database.dsn, "indexes": list(specs), **params}
    )


def test_an_index_matched_by_its_definition_passes(orders_db: PgDatabase, tmp_path: Path) -> None:
    result = _indexes(
        tmp_path,
        orders_db,
        {"table": "orders", "columns": ["account_id"], "method": "btree", "unique": False},
        {"table": "accounts", "columns": ["email"], "unique": True},
    )
    assert result.status is Status.PASS, result.summary
    assert "present: ix_orders_account_id (btree index on orders (account_id))" in result.evidence


def test_a_differently_named_index_with_the_definition_passes_saying_so(
    orders_db: PgDatabase, tmp_path: Path
) -> None:
    result = _indexes(
        tmp_path,
        orders_db,
        {"table": "orders", "columns": ["account_id"], "name": "orders_account_idx"},
    )
    assert result.status is Status.PASS
    assert result.evidence[0] == (
        "orders: no index named orders_account_idx, but ix_orders_account_id has the "
        "definition (btree index on orders (account_id))"
    )


def test_a_name_alone_does_not_satisfy_another_definition(
    orders_db: PgDatabase, tmp_path: Path
) -> None:
    result = _indexes(
        tmp_path,
        orders_db,
        {"table": "orders", "columns": ["created_at"], "name": "ix_orders_account_id"},
    )
    assert result.status is Status.FAIL
    assert result.summary == "missing index on orders (created_at)"
    assert (
        "ix_orders_account_id exists but is another index: btree index on orders (account_id)"
        in result.evidence
    )
    assert result.remediation == (
        "CREATE INDEX CONCURRENTLY ix_orders_account_id ON public.orders (created_at)"
    )


@pytest.mark.parametrize(
    "spec",
    [
        {"table": "orders", "columns": ["account_id", "created_at"]},  # column order
        {"table": "orders", "columns": ["created_at", "account_id"], "method": "hash"},
        {"table": "orders", "columns": ["created_at", "account_id"], "unique": True},
        {"table": "orders", "columns": ["created_at", "account_id"], "where": "total_cents > 0"},
        {"table": "orders", "columns": ["created_at", "account_id"]},  # the index is partial
    ],
    ids=["column-order", "method", "uniqueness", "predicate", "partial-vs-full"],
)
def test_every_part_of_the_definition_must_match(
    orders_db: PgDatabase, tmp_path: Path, spec: dict[str, Any]
) -> None:
    orders_db.execute(
        "CREATE INDEX ix_orders_recent ON orders (created_at, account_id) WHERE total_cents > 100"
    )
    assert _indexes(tmp_path, orders_db, spec).status is Status.FAIL
    exact = {
        "table": "orders",
        "columns": ["created_at", "account_id"],
        "method": "btree",
        "unique": False,
        "where": "total_cents > 100",
    }
    assert _indexes(tmp_path, orders_db, exact).status is Status.PASS


def test_expressions_and_predicates_match_however_they_are_written(
    orders_db: PgDatabase, tmp_path: Path
) -> None:
    orders_db.execute("ALTER TABLE accounts ADD COLUMN status text")
    orders_db.execute(
        "CREATE UNIQUE INDEX ux_accounts_email_live ON accounts (lower(email))"
        " WHERE status IN ('active', 'trial')"
    )
    same = {
        "table": "accounts",
        "columns": ["LOWER( email )"],
        "unique": True,
        "where": "status = ANY (ARRAY['active', 'trial'])",
    }
    assert _indexes(tmp_path, orders_db, same).status is Status.PASS
    # Case matters inside a string literal.
    other = {**same, "where": "status IN ('Active', 'trial')"}
    assert _indexes(tmp_path, orders_db, other).status is Status.FAIL


def test_a_predicate_postgres_cannot_read_fails_with_its_message(
    orders_db: PgDatabase, tmp_path: Path
) -> None:
    orders_db.execute("CREATE INDEX ix_big ON orders (created_at) WHERE total_cents > 100")
    result = _indexes(
        tmp_path,
        orders_db,
        {"table": "orders", "columns": ["created_at"], "where": "no_such_column > 100"},
    )
    assert result.status is Status.FAIL
    assert any(
        line.startswith("PostgreSQL cannot read orders (created_at) WHERE no_such_column > 100:")
        and "no_such_column" in line
        for line in result.evidence
    )


def test_an_index_on_a_missing_table_fails(orders_db: PgDatabase, tmp_path: Path) -> None:
    result = _indexes(tmp_path, orders_db, {"table": "invoices", "columns": ["id"]})
    assert result.status is Status.FAIL
    assert result.summary == "table public.invoices does not exist"


def _make_invalid_index(database: PgDatabase) -> None:
    database.execute("INSERT INTO accounts (email) VALUES ('a@example.com')")
    database.execute(
        "INSERT INTO orders (account_id, total_cents)"
        " SELECT id, 100 FROM accounts UNION ALL SELECT id, 100 FROM accounts"
    )
    # A unique build over duplicates fails and, being concurrent, leaves the index behind.
    with pytest.raises(psycopg.errors.UniqueViolation):
        database.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY ux_orders_account ON orders (account_id)"
        )


def test_an_invalid_index_fails(orders_db: PgDatabase, tmp_path: Path) -> None:
    _make_invalid_index(orders_db)
    result = _indexes(tmp_path, orders_db)
    assert result.status is Status.FAIL
    assert result.summary == "invalid: ux_orders_account (on orders)"
    assert result.metrics["invalid"] == 1
    assert "REINDEX INDEX CONCURRENTLY" in (result.remediation or "")
    assert _indexes(tmp_path, orders_db, check_invalid=False).status is Status.PASS


def test_an_invalid_index_with_the_required_definition_does_not_count(
    orders_db: PgDatabase, tmp_path: Path
) -> None:
    _make_invalid_index(orders_db)
    result = _indexes(
        tmp_path,
        orders_db,
        {"table": "orders", "columns": ["account_id"], "unique": True},
        check_invalid=False,
    )
    assert result.status is Status.FAIL
    assert result.summary == "ux_orders_account on orders has the definition but is invalid"


class _ConcurrentBuild:
    """A CREATE INDEX CONCURRENTLY held in its wait for older transactions: the index
    exists, invalid, until the writer below commits."""

    def __init__(self, database: PgDatabase, *, as_superuser: bool) -> None:
        self.database = database
        self.writer = _connect(database.dsn)
        self.writer.execute("BEGIN")
        self.writer.execute("INSERT INTO accounts (email) VALUES ('w@example.com')")
        dsn = database.superuser_dsn if as_superuser else database.dsn
        self.builder = _connect(dsn)
        self.thread = threading.Thread(
            target=self.builder.execute,
            args=("CREATE INDEX CONCURRENTLY ix_accounts_created ON accounts (created_at)",),
        )

    def __enter__(self) -> _ConcurrentBuild:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.database.execute(
            "SELECT 1 FROM pg_class WHERE relname = 'ix_accounts_created'", as_superuser=True
        ):
            assert time.monotonic() < deadline, "the concurrent build never started"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.writer.execute("COMMIT")
        self.thread.join(timeout=20)
        self.writer.close()
        self.builder.close()


def test_an_index_being_built_concurrently_is_not_reported_invalid(
    orders_db: PgDatabase, tmp_path: Path
) -> None:
    with _ConcurrentBuild(orders_db, as_superuser=False):
        result = _indexes(tmp_path, orders_db)
    assert result.status is Status.PASS, result.summary
    assert "ix_accounts_created is being built right now (not counted)" in result.evidence


def test_a_build_hidden_from_the_role_makes_an_invalid_index_a_warning(
    orders_db: PgDatabase, tmp_path: Path
) -> None:
    # Built by the superuser, the build's progress row hides which index it builds.
    with _ConcurrentBuild(orders_db, as_superuser=True):
        result = _indexes(tmp_path, orders_db)
    assert result.status is Status.WARN
    assert re.search(r"\d+ index builds? by other roles in progress", result.summary)


def test_unindexed_foreign_keys_warn_when_asked(pg_database: PgDatabase, tmp_path: Path) -> None:
    upgrade(pg_database.dsn, "0002")
    result = _indexes(tmp_path, pg_database, check_fk_indexes=True)
    assert result.status is Status.WARN
    assert result.summary == "1 foreign key without an index"
    assert result.evidence == [
        "foreign key orders_account_id_fkey: orders (account_id) → accounts has no index on "
        "its leading columns"
    ]
    assert result.remediation == "CREATE INDEX CONCURRENTLY ON public.orders (account_id)"
    assert _indexes(tmp_path, pg_database).status is Status.PASS  # not asked: not checked
    upgrade(pg_database.dsn, "heads")  # 0003 adds the index
    assert _indexes(tmp_path, pg_database, check_fk_indexes=True).status is Status.PASS


@pytest.mark.parametrize(
    "message",
    [
        "connection failed: FATAL:  unsupported startup parameter: options",  # PgBouncer
        "FATAL: Feature not supported: RDS Proxy currently doesn't support command-line options.",
    ],
)
def test_a_pooler_refusing_startup_options_is_recognised(message: str) -> None:
    from readycheck.checks.postgres.session import _refuses_options

    assert _refuses_options(message)
    assert not _refuses_options('FATAL:  password authentication failed for user "app"')
