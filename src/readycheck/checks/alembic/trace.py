"""The trace: run the pending revisions for real on a throwaway PostgreSQL, and record the
locks each statement holds.

The throwaway server is the one ``readycheck demo`` starts (demo/postgres.py: a cluster
in a temp dir on 127.0.0.1, gone when stopped), loaded with the target's schema only
(schema_copy.py reads it, never a row). The revisions' ``upgrade()`` functions run
against it through Alembic's ``Operations`` on a real connection, in one transaction (or
one per revision with ``transaction_per_migration``) as ``alembic upgrade`` would; after
each statement, the tracer reads ``pg_locks`` for its own backend; at the end everything
is rolled back (with ``transaction_per_migration``, each revision's transaction is
committed on the throwaway server so that the next one sees its changes) and the server
stopped. The target database is never connected to here.

This sees what reading the SQL cannot: locks taken by triggers, cascades and implicit
index builds, and the statements of revisions that need a live connection (data
migrations), which do run here. It cannot see locks a statement releases before it ends
(``CONCURRENTLY`` builds run outside any transaction): those show no lock afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from readycheck.checks.alembic.scripts import REVISION_ERRORS, importing
from readycheck.checks.alembic.statements import Lock, Table, TableLock

if TYPE_CHECKING:
    from readycheck.checks.alembic.scripts import Scripts

_OWN_LOCKS = (
    "SELECT c.relname, n.nspname, pg_table_is_visible(c.oid), l.mode"
    " FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted"
    " AND c.relkind IN ('r', 'p', 'm')"
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND n.nspname NOT LIKE 'pg\\_toast%'"
)
_USER_TABLES = (
    "SELECT c.relname, n.nspname, pg_table_is_visible(c.oid) FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm')"
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND n.nspname NOT LIKE 'pg\\_toast%'"
)


@dataclass(frozen=True)
class TracedStatement:
    revision: str
    sql: str
    held: frozenset[TableLock]
    """Every table lock the transaction holds once the statement has run."""
    new: frozenset[TableLock]
    """The ones it did not hold before the statement."""


@dataclass(frozen=True)
class Trace:
    statements: tuple[TracedStatement, ...]
    existing: frozenset[Table]
    """The tables of the copied schema (before any revision ran)."""
    server: str
    """``PostgreSQL 16.4``: the throwaway server's version."""
    schema_problems: tuple[str, ...] = ()
    """Schema statements the throwaway server refused (a missing extension, ...)."""
    failure: str | None = None
    """Where the real run stopped, if it did (``0005: UndefinedColumn: ...``)."""
    source: str = ""
    """Where the schema was read (``by pg_dump 16.4``, ``from the catalogs``)."""

    def during(self, revision: str) -> set[TableLock]:
        """Every lock held while ``revision`` ran."""
        return {
            lock
            for statement in self.statements
            if statement.revision == revision
            for lock in statement.held
        }


class TraceUnavailable(Exception):
    """The trace could not be run at all (no server binaries, ...)."""


def run(
    schema: Sequence[str],
    scripts: Scripts,
    pending: Sequence[str],
    *,
    transaction_per_migration: bool,
    timeout_s: float,
) -> Trace:
    """Start a throwaway server, load ``schema``, run ``pending``, roll back, stop."""
    import psycopg

    from readycheck.demo.postgres import SUPERUSER, PostgresServer, execute
    from readycheck.demo.processes import ServerStartError

    try:
        server = PostgresServer.start(label="trace")
    except (ServerStartError, OSError) as exc:
        raise TraceUnavailable(str(exc).strip().splitlines()[0]) from None
    try:
        try:
            execute(server.dsn(user=SUPERUSER, dbname="postgres"), "CREATE DATABASE trace")
        except psycopg.Error as exc:
            raise TraceUnavailable(f"the throwaway server refused a database: {exc}") from None
        dsn = server.dsn(user=SUPERUSER, dbname="trace")
        problems = _load(dsn, schema, timeout_s)
        major, minor = divmod(server.server_version_num, 10000)
        return _run(
            dsn,
            scripts,
            pending,
            per_migration=transaction_per_migration,
            timeout_s=timeout_s,
            server=f"PostgreSQL {major}.{minor}",
            problems=problems,
        )
    finally:
        server.stop()


def _load(dsn: str, schema: Sequence[str], timeout_s: float) -> tuple[str, ...]:
    """Run each schema statement on its own; the refused ones are returned, not fatal."""
    import psycopg

    problems = []
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"SET statement_timeout = {max(1, int(timeout_s * 1000))}")
        for statement in schema:
            try:
                connection.execute(statement.encode())
            except psycopg.Error as exc:
                said = (exc.diag.message_primary or str(exc)).strip().splitlines()
                first = " ".join(statement.split())[:80]
                problems.append(f"{first}: {said[0] if said else type(exc).__name__}")
    return tuple(problems)


def _run(
    dsn: str,
    scripts: Scripts,
    pending: Sequence[str],
    *,
    per_migration: bool,
    timeout_s: float,
    server: str,
    problems: tuple[str, ...],
) -> Trace:
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, event, pool

    url = "postgresql+psycopg://" + dsn.split("://", 1)[1]
    engine = create_engine(url, poolclass=pool.NullPool)
    traced: list[TracedStatement] = []
    revision = [""]
    held: set[TableLock] = set()
    failure = None
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SET statement_timeout = {max(1, int(timeout_s * 1000))}")
            existing = frozenset(_tables(connection.connection.cursor(), _USER_TABLES))
            connection.commit()

            def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                now = set(_own_locks(cursor.connection.cursor()))
                traced.append(
                    TracedStatement(revision[0], statement, frozenset(now), frozenset(now - held))
                )
                held.clear()
                held.update(now)

            event.listen(connection, "after_cursor_execute", after)
            context = MigrationContext.configure(
                connection=connection,
                opts={"transaction_per_migration": per_migration},
            )
            with importing(scripts.sys_path), Operations.context(context):
                outer = context.begin_transaction()
                try:
                    for name in pending:
                        revision[0] = name
                        inner = context.begin_transaction(_per_migration=True)
                        try:
                            upgrade = getattr(scripts.modules.get(name), "upgrade", None)
                            if callable(upgrade):
                                upgrade()
                        except REVISION_ERRORS as exc:
                            said = str(exc).strip().splitlines()
                            failure = f"{name}: {type(exc).__name__}" + (
                                f": {said[0]}" if said else ""
                            )
                            break
                        finally:
                            # Each revision's own transaction is committed (on the
                            # throwaway server) so that the next one sees its changes.
                            _finish(inner, commit=failure is None)
                            if per_migration:
                                held.clear()
                finally:
                    _finish(outer, commit=False)
    finally:
        engine.dispose()
    return Trace(tuple(traced), existing, server, problems, failure)


def _finish(transaction: Any, *, commit: bool) -> None:
    """Commit or roll back a transaction Alembic began (it may have begun none: a
    nullcontext, or one an autocommit block already ended)."""
    context = getattr(transaction, "migration_context", None)
    if context is None or context._transaction is None:
        return
    with contextlib.suppress(Exception):
        transaction.commit() if commit else transaction.rollback()


def _tables(cursor: Any, query: str) -> list[Table]:
    with cursor:
        cursor.execute(query)
        return [Table(name, None if visible else schema) for name, schema, visible in cursor]


def _own_locks(cursor: Any) -> list[TableLock]:
    found = []
    with cursor:
        cursor.execute(_OWN_LOCKS)
        for name, schema, visible, mode in cursor:
            lock = Lock.of_pg_mode(mode)
            if lock is not None:
                found.append(TableLock(Table(name, None if visible else schema), lock))
    return found


def same_table(a: Table, b: Table) -> bool:
    """Whether two names are the same table (a schema written on one side only matches)."""
    return a.name == b.name and (a.schema is None or b.schema is None or a.schema == b.schema)


def confirms(trace: Trace, revision: str, table: Table, lock: Lock) -> bool:
    """Whether the trace saw ``lock`` (or a stronger one) held on ``table`` while
    ``revision`` ran."""
    return any(
        same_table(held.table, table) and held.lock >= lock for held in trace.during(revision)
    )


def unexpected(
    trace: Trace, predicted: Sequence[tuple[str, TableLock]]
) -> list[tuple[TracedStatement, TableLock]]:
    """Locks that block writes, on tables of the copied schema, that a revision took in
    the trace although none of its parsed statements says so (``predicted``: each
    revision's locks as read from its SQL)."""
    found = []
    for statement in trace.statements:
        for taken in sorted(statement.new, key=lambda entry: (str(entry.table), entry.lock)):
            if not taken.lock.conflicts_with(Lock.ROW_EXCLUSIVE):
                continue
            if not any(same_table(taken.table, table) for table in trace.existing):
                continue
            if any(
                revision == statement.revision
                and same_table(expected.table, taken.table)
                and expected.lock >= taken.lock
                for revision, expected in predicted
            ):
                continue
            found.append((statement, taken))
    return found
