"""The one way readycheck opens a PostgreSQL session, and how its failures read.

Every session is safe to open against production:

- read-only: ``default_transaction_read_only=on`` in the startup ``options``. psycopg's
  ``conn.read_only`` would not do: it has no effect in autocommit mode, and autocommit is
  what keeps readycheck from holding a transaction (and its locks) between statements;
- bounded: ``statement_timeout`` and ``lock_timeout`` (a statement queued behind a
  migration's lock gives up well before the check's own timeout, so the check can say
  the table is locked), and a connect timeout (libpq waits about 130 s when none is set,
  and never less than 2 s: a shorter one is enforced here);
- named: ``application_name=readycheck``, so whoever looks at pg_stat_activity sees us.

A server that refuses startup ``options`` (PgBouncer, RDS Proxy) gets a session without
them, and every query then runs in a transaction that sets the same things with
``SET TRANSACTION READ ONLY`` and ``set_config(..., is_local => true)``: a transaction-mode
pooler may hand each transaction to another server connection, so a session-level ``SET``
would not stick. The checks say so in their evidence.

Secrets: libpq's parse errors echo the connection string, password included. Nothing a
library says leaves this module unless rebuilt from known-safe parts (a keyword name, the
user and database names) or passed through the redactor.

psycopg is imported inside the functions, so the check modules that import this one stay
light to import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import math
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, LiteralString, TypeAlias

from readycheck.checks.postgres.dsn import REMEDY as DSN_REMEDY
from readycheck.checks.postgres.dsn import DsnError, PostgresDsn
from readycheck.checks.postgres.dsn import parse as parse_dsn
from readycheck.checks.postgres.dsn import problem as dsn_problem
from readycheck.results import Outcome, Status
from readycheck.units import Duration

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql
    from psycopg.abc import Params

    # What AsyncConnection.execute takes (psycopg.abc.Query also has Template from 3.3 on).
    Query: TypeAlias = LiteralString | bytes | sql.SQL | sql.Composed

    from readycheck.checks.postgres import PostgresParams
    from readycheck.context import Context
    from readycheck.redact import Redactor

APPLICATION_NAME = "readycheck"
LIBPQ_MIN_CONNECT_TIMEOUT = 2
# Kept back from the check's time so that, after a statement or lock timeout, the check
# still has the time to find out why and report it before the engine cancels it.
REPORT_MARGIN_SECONDS = 0.5
# A lock wait this long already answers the question "is something holding the table?".
MAX_LOCK_WAIT_SECONDS = 5.0
MIN_TIMEOUT_MS = 100

Row = tuple[Any, ...]

_QUOTED = re.compile(r'"([^"]*)"')


class SessionFailure(Exception):
    """Opening the session failed; ``outcome`` says why in words safe to show."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.summary)
        self.outcome = outcome


class _OptionsRefused(Exception):
    pass


@dataclass(frozen=True)
class Limits:
    """The time limits of one session, derived from what is left of the check's time."""

    connect_seconds: float
    statement_ms: int
    lock_ms: int

    @classmethod
    def within(cls, connect_timeout: Duration, remaining: float) -> Limits:
        usable = max(0.1, remaining - REPORT_MARGIN_SECONDS)
        statement_ms = max(MIN_TIMEOUT_MS, int(usable * 1000))
        lock_ms = max(MIN_TIMEOUT_MS, int(min(MAX_LOCK_WAIT_SECONDS, usable / 2) * 1000))
        return cls(min(connect_timeout.seconds, usable), statement_ms, lock_ms)

    @property
    def statement_timeout(self) -> Duration:
        return Duration(self.statement_ms / 1000)

    @property
    def lock_timeout(self) -> Duration:
        return Duration(self.lock_ms / 1000)


@dataclass(frozen=True)
class Target:
    """Where a DSN points, for messages: host, port, database and user, never a password."""

    host: str
    port: str
    dbname: str
    user: str

    @classmethod
    def of(cls, params: Mapping[str, str]) -> Target:
        # libpq falls back to these variables, then to its built-in defaults.
        user = params.get("user") or os.environ.get("PGUSER") or _os_user()
        host = (
            params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
        )
        port = params.get("port") or os.environ.get("PGPORT") or "5432"
        dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user
        return cls(host=host, port=port, dbname=dbname, user=user)

    @property
    def address(self) -> str:
        if self.host.startswith("/"):
            return f"the socket in {self.host} (port {self.port})"
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"database {self.dbname} at {self.address} as {self.user}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "the current user"


class Session:
    """An open read-only session; queries go through :meth:`fetch`."""

    def __init__(
        self,
        connection: psycopg.AsyncConnection[Row],
        *,
        target: Target,
        limits: Limits,
        startup_options: bool,
        connect_ms: float,
        dsn_reading: str | None = None,
    ) -> None:
        self.connection = connection
        self.target = target
        self.limits = limits
        self.startup_options = startup_options
        self.connect_ms = connect_ms
        self.dsn_reading = dsn_reading

    @property
    def notes(self) -> list[str]:
        """Evidence every check of this session should carry."""
        notes = [f"DSN: {self.dsn_reading}"] if self.dsn_reading else []
        if not self.startup_options:
            notes.append(
                "the server refused startup options (a pooler such as PgBouncer?): every "
                "query ran in a transaction set read-only with statement_timeout "
                f"{self.limits.statement_timeout} and lock_timeout {self.limits.lock_timeout} "
                "by SET LOCAL instead"
            )
        return notes

    @property
    def ssl_in_use(self) -> bool:
        return bool(self.connection.pgconn.ssl_in_use)

    async def fetch(
        self,
        query: Query,
        params: Params | None = None,
        *,
        settings: Mapping[str, str] | None = None,
    ) -> list[Row]:
        """Run one read-only statement and return its rows.

        ``settings`` are set for this statement only (``SET LOCAL``), in a transaction.
        """
        if self.startup_options and not settings:
            return await self._rows(query, params)
        async with self.transaction():
            await self._set_local(settings or {})
            return await self._rows(query, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """A transaction as safe as the session: read-only, with its timeouts, whether the
        server took them as startup options or they must be set in each transaction."""
        async with self.connection.transaction():
            if not self.startup_options:
                await self.connection.execute("SET TRANSACTION READ ONLY")
                await self._set_local(
                    {
                        "statement_timeout": str(self.limits.statement_ms),
                        "lock_timeout": str(self.limits.lock_ms),
                    }
                )
            yield

    async def fetchone(self, query: Query, params: Params | None = None) -> Row:
        rows = await self.fetch(query, params)
        if not rows:
            raise LookupError("the query returned no row")
        return rows[0]

    async def roundtrip_ms(self) -> float:
        """The time of one ``SELECT 1``, in milliseconds."""
        started = time.perf_counter()
        await self.connection.execute("SELECT 1")
        return (time.perf_counter() - started) * 1000.0

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.connection.close()

    async def _rows(self, query: Query, params: Params | None) -> list[Row]:
        cursor = await self.connection.execute(query, params)
        return await cursor.fetchall() if cursor.description else []

    async def _set_local(self, settings: Mapping[str, str]) -> None:
        for name, value in settings.items():
            await self.connection.execute("SELECT set_config(%s, %s, true)", (name, value))


async def open_session(
    dsn: PostgresDsn,
    connect_timeout: Duration,
    ctx: Context,
    *,
    startup_options: bool = True,
) -> Session:
    """Open a safe session (see the module docstring), or raise :class:`SessionFailure`.

    ``startup_options=False`` skips the attempt with startup options, as after a pooler
    refused them (tests use it to exercise that path against a plain server).
    """
    try:
        params = parse_dsn(dsn.reveal())
    except DsnError as exc:
        raise SessionFailure(_bad_dsn(str(exc))) from None
    target = Target.of(params)
    limits = Limits.within(connect_timeout, ctx.remaining())
    if startup_options:
        try:
            return await _connect(dsn, params, target, limits, ctx, with_options=True)
        except _OptionsRefused:
            ctx.logger.debug("startup options refused; falling back to SET LOCAL")
    return await _connect(dsn, params, target, limits, ctx, with_options=False)


async def _connect(
    dsn: PostgresDsn,
    params: Mapping[str, str],
    target: Target,
    limits: Limits,
    ctx: Context,
    *,
    with_options: bool,
) -> Session:
    import asyncio  # here, not at the top: `validate` imports this module, never an event loop

    import psycopg
    from psycopg.conninfo import make_conninfo

    settings = {
        "connect_timeout": str(max(LIBPQ_MIN_CONNECT_TIMEOUT, math.ceil(limits.connect_seconds))),
        "application_name": APPLICATION_NAME,
    }
    if with_options:
        ours = (
            f"-c default_transaction_read_only=on -c statement_timeout={limits.statement_ms} "
            f"-c lock_timeout={limits.lock_ms}"
        )
        # Keep the DSN's own options (a search_path, say); ours come last and win.
        settings["options"] = f"{params['options']} {ours}" if params.get("options") else ours
    started = time.monotonic()
    try:
        connection = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                make_conninfo(dsn.reveal(), **settings),
                autocommit=True,
                # Server-side prepared statements break behind a transaction-mode pooler.
                prepare_threshold=None,
            ),
            timeout=limits.connect_seconds,
        )
    except TimeoutError:
        raise SessionFailure(_no_answer(target, limits)) from None
    except psycopg.Error as exc:
        message = str(exc)
        if with_options and _refuses_options(message):
            raise _OptionsRefused from None
        raise SessionFailure(connect_failure(message, target, limits, ctx.redactor)) from None
    return Session(
        connection,
        target=target,
        limits=limits,
        startup_options=with_options,
        connect_ms=(time.monotonic() - started) * 1000.0,
        dsn_reading=dsn.reading,
    )


async def with_session(
    p: PostgresParams,
    ctx: Context,
    body: Callable[[Session], Awaitable[Outcome]],
    *,
    unreachable: Status = Status.FAIL,
) -> Outcome:
    """Open a session, run ``body`` with it, close it; driver errors become outcomes.

    A database that cannot be reached FAILs the checks whose question it answers (is it
    up, at head, indexed); a check that only uses it to weigh something else (the safety
    of pending migrations) says ``unreachable=Status.ERROR``: it could not do its work.
    """
    import psycopg

    try:
        session = await open_session(p.dsn, p.connect_timeout, ctx)
    except SessionFailure as failure:
        if failure.outcome.status is Status.FAIL:
            return dataclasses.replace(failure.outcome, status=unreachable)
        return failure.outcome
    try:
        outcome = await body(session)
    except psycopg.Error as exc:
        outcome = query_failure(exc, session, ctx.redactor)
    finally:
        await session.close()
    return with_evidence(outcome, session.notes)


def with_evidence(outcome: Outcome, lines: list[str]) -> Outcome:
    if not lines:
        return outcome
    return dataclasses.replace(outcome, evidence=(*outcome.evidence, *lines))


# -- failures, in words safe to show ------------------------------------------------------


def _refuses_options(message: str) -> bool:
    text = message.lower()
    # PgBouncer: "unsupported startup parameter: options"; RDS Proxy: "... doesn't support
    # command-line options".
    return "options" in text and "support" in text


def _no_answer(target: Target, limits: Limits) -> Outcome:
    return Outcome.failed(
        f"{target.address} did not answer within {Duration(round(limits.connect_seconds, 3))} "
        "(connect_timeout)",
        evidence=[f"connecting to {target}"],
        remediation="Check that the server is up and reachable from here (host, port, "
        "firewall, security group).",
    )


def _bad_dsn(what: str) -> Outcome:
    return Outcome.errored(
        f"the DSN is not a valid PostgreSQL connection string: {what}", remediation=DSN_REMEDY
    )


def connect_failure(message: str, target: Target, limits: Limits, redactor: Redactor) -> Outcome:
    """A connection failure, classified; only names from the DSN and the server's own
    words (redacted, quoted fragments masked) are shown."""
    text = message.lower()
    where = target.address
    evidence = [f"connecting to {target}"]
    found = dsn_problem(message)
    if found is not None:
        return _bad_dsn(found)
    if "password authentication failed" in text or "authentication failed" in text:
        return Outcome.failed(
            f"authentication failed for user {target.user} at {where}",
            evidence=evidence,
            remediation="Check the DSN's password (or the secret it comes from) against the "
            "role's password on the server.",
        )
    if "no password supplied" in text:
        return Outcome.failed(
            f"authentication failed: {where} asks for a password and the DSN gives none",
            evidence=evidence,
            remediation="Put the password in the DSN (from a secret: ${env:DB_PASSWORD}).",
        )
    if re.search(r'database "[^"]*" does not exist', message):
        return Outcome.failed(
            f"database {target.dbname} does not exist on {where}",
            evidence=evidence,
            remediation="Create the database, or fix the database name in the DSN.",
        )
    if re.search(r'role "[^"]*" does not exist', message):
        return Outcome.failed(
            f"authentication failed: role {target.user} does not exist on {where}",
            evidence=evidence,
        )
    if "connection refused" in text:
        return Outcome.failed(
            f"nothing is listening at {where} (connection refused)",
            evidence=evidence,
            remediation="Start the server, or fix the host and port in the DSN.",
        )
    if "timeout expired" in text or "timed out" in text:
        return _no_answer(target, limits)
    if "resolve host" in text or "translate host name" in text or "name or service" in text:
        return Outcome.failed(f"the host name {target.host} does not resolve", evidence=evidence)
    if "too many" in text or "connection slots are reserved" in text:
        return Outcome.failed(
            f"{where} refuses new connections: its connection slots are all taken",
            evidence=evidence,
            remediation="Find what holds the connections (pg_stat_activity) before deploying.",
        )
    if "starting up" in text or "shutting down" in text or "recovery mode" in text:
        return Outcome.failed(
            f"{where} is not accepting connections (starting up, shutting down or recovering)",
            evidence=evidence,
        )
    if "pg_hba.conf" in text:
        return Outcome.failed(
            f"{where} does not allow this connection (no pg_hba.conf entry for user "
            f"{target.user}, database {target.dbname})",
            evidence=evidence,
        )
    if "permission denied for database" in text:
        return Outcome.failed(
            f"role {target.user} may not connect to database {target.dbname}", evidence=evidence
        )
    return Outcome.failed(
        f"could not connect to {where}: {server_words(message, target, redactor)}",
        evidence=evidence,
    )


def server_words(message: str, target: Target, redactor: Redactor) -> str:
    """The last line of a libpq/server message, redacted, with quoted fragments masked
    unless they are names we already show (user, database, host)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else message.strip()
    last = re.sub(r"^.*?failed:\s*", "", last)
    last = re.sub(r"^(FATAL|ERROR):\s*", "", last).strip()
    known = {target.user, target.dbname, target.host}

    def mask(match: re.Match[str]) -> str:
        return match.group(0) if match.group(1) in known else '"…"'

    return _QUOTED.sub(mask, redactor.redact(last)) or "no reason given"


def query_failure(exc: psycopg.Error, session: Session, redactor: Redactor) -> Outcome:
    """A query's failure: a timeout, a missing privilege, a lost connection."""
    import psycopg
    from psycopg import errors

    primary = exc.diag.message_primary or str(exc)
    said = redactor.redact(primary.strip().splitlines()[0] if primary.strip() else "")
    limits = session.limits
    if isinstance(exc, errors.LockNotAvailable):
        return Outcome.errored(
            f"a query waited longer than lock_timeout ({limits.lock_timeout}) for a lock "
            "another session holds",
            remediation="Find the session holding the lock (pg_locks); a migration may be running.",
        )
    if isinstance(exc, errors.QueryCanceled):
        return Outcome.errored(
            f"a query ran longer than statement_timeout ({limits.statement_timeout})",
            remediation="Raise the check's timeout if the server is slow but healthy.",
        )
    if isinstance(exc, errors.InsufficientPrivilege):
        return Outcome.errored(
            f"user {session.target.user} lacks a privilege: {said}",
            remediation="Grant the role read access to what the check reads (pg_monitor "
            "covers the statistics views).",
        )
    if isinstance(exc, psycopg.OperationalError):
        return Outcome.failed(f"the connection to {session.target.address} was lost: {said}")
    return Outcome.errored(f"PostgreSQL refused a query: {said}")
