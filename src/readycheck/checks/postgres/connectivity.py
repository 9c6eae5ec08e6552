"""postgres.connectivity: the database answers, fast enough, at the right version and role."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from readycheck.checks.postgres import PostgresParams
from readycheck.checks.postgres.session import with_session
from readycheck.checks.roundtrips import BUDGET_MEANING, RoundTrips
from readycheck.registry import check
from readycheck.results import Outcome
from readycheck.units import Duration, format_duration_ms

if TYPE_CHECKING:
    from readycheck.checks.postgres.session import Session
    from readycheck.context import Context


class ConnectivityParams(PostgresParams):
    min_version: int | None = Field(
        None,
        ge=9,
        le=99,
        description="Lowest PostgreSQL major version accepted, e.g. 15 (FAIL below it).",
    )
    max_latency: Duration = Field(
        Duration("100ms"),
        description=f"`SELECT 1`. {BUDGET_MEANING}",
    )
    require_ssl: bool = Field(
        False, description="FAIL unless the connection is encrypted (SSL/TLS in use)."
    )
    expect_primary: bool = Field(
        True,
        description="FAIL when the server is a replica (pg_is_in_recovery()): migrations "
        "and writes must not be aimed at a replica.",
    )


@check("postgres.connectivity", params=ConnectivityParams, category="database")
async def connectivity(p: ConnectivityParams, ctx: Context) -> Outcome:
    """Connect to PostgreSQL; check its version, SELECT 1 latency, SSL and primary role."""
    return await with_session(p, ctx, lambda session: _evaluate(p, session))


async def _evaluate(p: ConnectivityParams, session: Session) -> Outcome:
    version, version_num, database, user, in_recovery = await session.fetchone(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
        " current_database(), current_user, pg_is_in_recovery()"
    )
    trips = await RoundTrips.measure(session.roundtrip_ms)
    latency = trips.fastest
    ssl = session.ssl_in_use
    protocol = await _ssl_protocol(session) if ssl else None
    # server_version reads like "15.6 (Debian 15.6-1.pgdg120+2)": the first word is enough.
    release = str(version).split()[0]
    major = int(version_num) // 10000
    evidence = [
        f"PostgreSQL {release} (server_version_num {version_num})",
        f"database {database}, user {user}",
        trips.evidence("SELECT 1", p.max_latency),
        *trips.notes(p.max_latency),
        f"SSL in use: {protocol}" if protocol else f"SSL {'in use' if ssl else 'not in use'}",
        "role: replica (in recovery)" if in_recovery else "role: primary",
        f"connected in {format_duration_ms(session.connect_ms)}",
    ]
    problems = []
    if p.min_version is not None and major < p.min_version:
        problems.append(f"PostgreSQL {major} is older than the required {p.min_version}")
    if trips.over(p.max_latency):
        problems.append(
            f"SELECT 1 took {format_duration_ms(latency)} at the fastest of "
            f"{len(trips.samples_ms)}, over the {p.max_latency} allowed"
        )
    if p.require_ssl and not ssl:
        problems.append("the connection is not encrypted (require_ssl)")
    if p.expect_primary and in_recovery:
        problems.append("the server is a replica in recovery, not the primary")
    metrics = {
        **trips.metrics(),
        "server_version_num": float(version_num),
        "connect_ms": round(session.connect_ms, 3),
    }
    if problems:
        return Outcome.failed(
            "; ".join(problems),
            evidence=evidence,
            metrics=metrics,
            remediation=_remedy(p, major, ssl, bool(in_recovery)),
        )
    return Outcome.passed(
        f"PostgreSQL {release} answered in {format_duration_ms(latency)}",
        evidence=evidence,
        metrics=metrics,
    )


async def _ssl_protocol(session: Session) -> str | None:
    """The TLS version of this connection (TLSv1.3), as the server reports it.

    psycopg does not expose libpq's PQsslAttribute, so this asks pg_stat_ssl. Behind a
    pooler that row describes the pooler's own link to the server (or has no SSL at all):
    a detail, so anything going wrong here leaves the protocol out rather than failing.
    """
    import psycopg

    try:
        rows = await session.fetch(
            "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl"
        )
    except psycopg.Error:
        return None
    return str(rows[0][0]) if rows and rows[0][0] else None


def _remedy(p: ConnectivityParams, major: int, ssl: bool, in_recovery: bool) -> str:
    steps = []
    if p.min_version is not None and major < p.min_version:
        steps.append(f"upgrade the server to PostgreSQL {p.min_version} or later")
    if p.require_ssl and not ssl:
        steps.append("add sslmode=require (or verify-full) to the DSN and enable SSL on the server")
    if p.expect_primary and in_recovery:
        steps.append("point the DSN at the primary, not a replica")
    if not steps:
        steps.append("find out why the round trip is slow (network path, server load)")
    text = "; ".join(steps)
    return text[0].upper() + text[1:] + "."
