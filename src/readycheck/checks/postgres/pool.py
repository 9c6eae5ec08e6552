"""postgres.pool: the application's connection pools fit in what the server has left.

Usable connections are ``max_connections`` minus ``superuser_reserved_connections`` minus
``reserved_connections`` (PostgreSQL 16+): tools that ignore the reserved slots
over-report the room. Only client backends count (not the checkpointer, walwriter,
autovacuum launcher...). A role without pg_monitor / pg_read_all_stats sees other roles'
sessions without their type or state; those with a database and a user are counted as
client backends, which errs on the side of less room.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import Field

from readycheck.checks.postgres import PostgresParams
from readycheck.checks.postgres.session import SessionFailure, open_session, with_session
from readycheck.registry import check
from readycheck.results import Outcome
from readycheck.units import Duration, format_duration_ms

if TYPE_CHECKING:
    from readycheck.checks.postgres.session import Session
    from readycheck.context import Context

_SHOWN_SESSIONS = 5

_SETTINGS = (
    "SELECT current_setting('max_connections')::int,"
    " current_setting('superuser_reserved_connections')::int,"
    # missing_ok: reserved_connections exists from PostgreSQL 16 on.
    " current_setting('reserved_connections', true)"
)

_COUNTS = """
SELECT
  count(*) FILTER (WHERE backend_type = 'client backend'),
  count(*) FILTER (WHERE backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL),
  count(*) FILTER (WHERE backend_type = 'client backend'
                     AND state IN ('idle in transaction', 'idle in transaction (aborted)')
                     AND now() - state_change > %(idle)s),
  count(*) FILTER (WHERE backend_type = 'client backend' AND now() - xact_start > %(long)s)
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
"""

_OFFENDERS = """
SELECT pid, usename, application_name, state, now() - state_change, now() - xact_start
FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND ((state IN ('idle in transaction', 'idle in transaction (aborted)')
        AND now() - state_change > %(idle)s)
       OR now() - xact_start > %(long)s)
ORDER BY xact_start
LIMIT 50
"""


class PoolParams(PostgresParams):
    pool_size: int = Field(
        ge=1,
        le=100_000,
        description="Connections each application pool keeps open (SQLAlchemy pool_size).",
    )
    max_overflow: int = Field(
        10,
        ge=0,
        le=100_000,
        description="Extra connections each pool may open under load (SQLAlchemy "
        "max_overflow; 10 is SQLAlchemy's default).",
    )
    workers: int = Field(
        1, ge=1, le=100_000, description="Processes that each hold a pool (workers times replicas)."
    )
    max_usage: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Fraction of the usable connections (max_connections minus the reserved "
        "ones) that today's backends plus the application's pools may take.",
    )
    idle_in_transaction_after: Duration = Field(
        Duration("60s"),
        description="WARN on sessions idle in transaction for longer than this.",
    )
    long_transaction_after: Duration = Field(
        Duration("5m"), description="WARN on transactions open for longer than this."
    )
    probe_connections: int = Field(
        0,
        ge=0,
        le=500,
        description="Open this many connections at once and report the slowest, to show the "
        "pool can really be filled (0: no probe). Refused, and FAIL, when the server has "
        "fewer free connections.",
    )

    @property
    def required(self) -> int:
        return (self.pool_size + self.max_overflow) * self.workers


@check("postgres.pool", params=PoolParams, category="database")
async def pool(p: PoolParams, ctx: Context) -> Outcome:
    """Check that the application's pools fit in the server's free connections."""
    return await with_session(p, ctx, lambda session: _evaluate(p, session, ctx))


async def _evaluate(p: PoolParams, session: Session, ctx: Context) -> Outcome:
    max_connections, superuser_reserved, reserved_setting = await session.fetchone(_SETTINGS)
    reserved = int(reserved_setting) if reserved_setting else 0
    usable = max_connections - superuser_reserved - reserved
    allowed = math.floor(p.max_usage * usable)  # a fraction of a connection is no room
    ages = {
        "idle": timedelta(seconds=p.idle_in_transaction_after.seconds),
        "long": timedelta(seconds=p.long_transaction_after.seconds),
    }
    visible, hidden, idle_count, long_count = await session.fetchone(_COUNTS, ages)
    backends = visible + hidden
    required = p.required
    headroom = allowed - backends - required

    reserved_text = f" - {reserved} reserved_connections" if reserved_setting is not None else ""
    evidence = [
        f"max_connections {max_connections} - {superuser_reserved} "
        f"superuser_reserved_connections{reserved_text} = {usable} usable",
        f"{p.max_usage:.0%} of {usable} = {allowed:g} allowed",
        f"{backends} client backends now (this check's own not counted)",
        f"the application needs ({p.pool_size} + {p.max_overflow}) x {p.workers} "
        f"worker{'s' if p.workers != 1 else ''} = {required}",
    ]
    if hidden:
        evidence.append(
            f"{hidden} sessions of other roles counted as client backends: their type and "
            f"state are hidden from {session.target.user} (grant pg_monitor to see them)"
        )
    metrics: dict[str, float] = {
        "max_connections": max_connections,
        "usable": usable,
        "backends": backends,
        "required": required,
        "headroom": headroom,
        "idle_in_transaction": idle_count,
        "long_transactions": long_count,
    }
    problems: list[str] = []
    warnings: list[str] = []
    if backends + required > allowed:
        problems.append(
            f"{backends} backends + {required} for the application exceed the {allowed:g} "
            f"allowed ({p.max_usage:.0%} of {usable} usable connections) by "
            f"{backends + required - allowed}"
        )
    if idle_count or long_count:
        evidence.extend(await _offenders(session, ages))
    if idle_count:
        warnings.append(
            f"{idle_count} session{'s' if idle_count != 1 else ''} idle in transaction for "
            f"over {p.idle_in_transaction_after}"
        )
    if long_count:
        warnings.append(
            f"{long_count} transaction{'s' if long_count != 1 else ''} open for over "
            f"{p.long_transaction_after}"
        )

    if p.probe_connections:
        free = usable - backends - 1  # our own session holds one
        if p.probe_connections > free:
            problems.append(
                f"cannot probe {p.probe_connections} connections: only {max(free, 0)} are free"
            )
        else:
            probe_problems, probe_evidence, probe_metrics = await _probe(p, ctx)
            problems.extend(probe_problems)
            evidence.extend(probe_evidence)
            metrics.update(probe_metrics)

    if problems:
        return Outcome.failed(
            "; ".join(problems + warnings),
            evidence=evidence,
            metrics=metrics,
            remediation="Raise max_connections, put a pooler (PgBouncer) in front, or shrink "
            "pool_size / max_overflow / workers.",
        )
    if warnings:
        return Outcome.warned(
            "; ".join(warnings),
            evidence=evidence,
            metrics=metrics,
            remediation="Find the sessions above in pg_stat_activity: an idle transaction "
            "holds locks and blocks vacuum; set idle_in_transaction_session_timeout.",
        )
    return Outcome.passed(
        f"{backends} backends + {required} for the application fit in the {allowed:g} "
        f"allowed ({headroom} to spare)",
        evidence=evidence,
        metrics=metrics,
    )


async def _offenders(session: Session, ages: dict[str, timedelta]) -> list[str]:
    rows = await session.fetch(_OFFENDERS, ages)
    lines = []
    for pid, user, application, state, idle_for, xact_age in rows[:_SHOWN_SESSIONS]:
        who = f"pid {pid} ({user}, {application or 'no application_name'})"
        if (
            state
            and state.startswith("idle in transaction")
            and idle_for
            and idle_for > ages["idle"]
        ):
            lines.append(f"{who} {state} for {_age(idle_for)}")
        else:
            lines.append(f"{who} transaction open for {_age(xact_age)} ({state or 'state hidden'})")
    if len(rows) > _SHOWN_SESSIONS:
        lines.append(f"... and {len(rows) - _SHOWN_SESSIONS} more")
    return lines


def _age(value: Any) -> str:
    seconds = value.total_seconds() if isinstance(value, timedelta) else 0.0
    return format_duration_ms(seconds * 1000.0)


async def _probe(p: PoolParams, ctx: Context) -> tuple[list[str], list[str], dict[str, float]]:
    """Open ``probe_connections`` sessions at once; close every one, whatever happens."""
    import asyncio

    count = p.probe_connections
    tasks = [asyncio.create_task(open_session(p.dsn, p.connect_timeout, ctx)) for _ in range(count)]
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        opened = [
            task.result()
            for task in tasks
            if task.done() and not task.cancelled() and task.exception() is None
        ]
        await asyncio.gather(*(session.close() for session in opened))
    failures: Counter[str] = Counter()
    for task in tasks:
        exc = task.exception()
        if isinstance(exc, SessionFailure):
            failures[exc.outcome.summary] += 1
        elif exc is not None:
            raise exc
    times = [session.connect_ms for session in opened]
    metrics: dict[str, float] = {"probe_opened": len(opened)}
    evidence = []
    if times:
        slowest = max(times)
        metrics["probe_slowest_ms"] = round(slowest, 3)
        evidence.append(
            f"probe: opened {len(opened)} of {count} connections at once; the slowest took "
            f"{format_duration_ms(slowest)}"
        )
    problems = []
    if failures:
        problems.append(f"only {len(opened)} of {count} probe connections opened")
        evidence.extend(f"probe: {n} x {reason}" for reason, n in failures.most_common())
    return problems, evidence, metrics
