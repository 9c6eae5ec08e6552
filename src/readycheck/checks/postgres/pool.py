"""postgres.pool: the application's connection pools fit in what the server has left.

Usable connections are ``max_connections`` minus ``superuser_reserved_connections`` minus
``reserved_connections`` (PostgreSQL 16+): tools that ignore the reserved slots
over-report the room. Only client backends count (not the checkpointer, walwriter,
autovacuum launcher...). A role without pg_monitor / pg_read_all_stats sees other roles'
sessions without their type or state (their user and application_name stay visible);
those with a database and a user are counted as client backends, which errs on the side
of less room.

readycheck's own sessions are never counted: this check's, and its sibling checks' that
run at the same moment (every readycheck session is named ``application_name=readycheck``).
Counting them made the verdict follow how many checks happened to be connected.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from readycheck.checks.patterns import as_list
from readycheck.checks.postgres import PostgresParams
from readycheck.checks.postgres.session import (
    APPLICATION_NAME,
    SessionFailure,
    open_session,
    with_session,
)
from readycheck.registry import check
from readycheck.results import Outcome
from readycheck.units import Duration, counted, format_duration_ms

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

# Every client backend, sorted into readycheck's own, the application's (when the profile
# says which they are) and the others.
_COUNTS = """
SELECT
  count(*) FILTER (WHERE ours),
  count(*) FILTER (WHERE NOT ours AND app),
  count(*) FILTER (WHERE NOT ours AND NOT app),
  count(*) FILTER (WHERE NOT ours AND NOT app AND here),
  count(*) FILTER (WHERE NOT ours AND hidden),
  count(*) FILTER (WHERE NOT ours
                     AND state IN ('idle in transaction', 'idle in transaction (aborted)')
                     AND now() - state_change > %(idle)s),
  count(*) FILTER (WHERE NOT ours AND now() - xact_start > %(long)s)
FROM (
  SELECT
    state, state_change, xact_start,
    pid = pg_backend_pid() OR application_name = %(ours)s AS ours,
    %(identified)s
      AND (cardinality(%(names)s::text[]) = 0 OR application_name = ANY(%(names)s::text[]))
      AND (cardinality(%(users)s::text[]) = 0 OR usename::text = ANY(%(users)s::text[]))
      AS app,
    datname = current_database() AS here,
    backend_type IS NULL AS hidden
  FROM pg_stat_activity
  WHERE backend_type = 'client backend'
     OR (backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL)
) AS sessions
"""

_OFFENDERS = """
SELECT pid, usename, application_name, state, now() - state_change, now() - xact_start
FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND application_name IS DISTINCT FROM %(ours)s
  AND ((state IN ('idle in transaction', 'idle in transaction (aborted)')
        AND now() - state_change > %(idle)s)
       OR now() - xact_start > %(long)s)
ORDER BY xact_start
LIMIT 50
"""


class ApplicationSessions(BaseModel):
    """Which of the server's sessions are the application's: those matching every
    criterion given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    application_name: str | list[str] = Field(
        default_factory=list,
        description="The application_name its connections set (a name or a list), as "
        "pg_stat_activity shows it: SQLAlchemy's connect_args, or ?application_name= in "
        "its DSN.",
    )
    user: str | list[str] = Field(
        default_factory=list,
        description="The database role it connects as (a name or a list).",
    )

    @property
    def names(self) -> list[str]:
        return as_list(self.application_name)

    @property
    def users(self) -> list[str]:
        return as_list(self.user)

    @model_validator(mode="after")
    def _something_named(self) -> ApplicationSessions:
        if not (self.names or self.users):
            raise ValueError("name the application's sessions by application_name or user")
        if APPLICATION_NAME in self.names:
            raise ValueError(
                f"{APPLICATION_NAME} is readycheck's own application_name: its sessions are "
                "never counted; name the application's"
            )
        return self

    def __str__(self) -> str:
        parts = []
        if self.names:
            parts.append(f"application_name {', '.join(self.names)}")
        if self.users:
            parts.append(f"user {', '.join(self.users)}")
        return " and ".join(parts)


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
    application: ApplicationSessions | None = Field(
        None,
        description="Which sessions are the application's (its pools as they are now), so "
        "that `deploy` can count them as the deploy will: a session is the application's "
        "when it matches every criterion given. Unset: they cannot be told from the others "
        "and are counted with them, and the evidence says how many may be its.",
    )
    deploy: Literal["rolling", "replace"] = Field(
        "rolling",
        description="What the deploy does with the application's pools. rolling: the new "
        "pools open while the old ones still hold their connections (other sessions + the "
        "application's current + the pools' full size). replace: the old pools are gone "
        "before the new ones open (other sessions + the pools' full size). replace needs "
        "`application`.",
    )
    max_usage: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Fraction of the usable connections (max_connections minus the reserved "
        "ones) that the sessions counted plus the application's pools may take.",
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

    @model_validator(mode="after")
    def _replace_needs_the_application(self) -> PoolParams:
        if self.deploy == "replace" and self.application is None:
            raise ValueError(
                "deploy: replace leaves the application's current sessions out of the count: "
                "say which they are with application: {application_name: ...} or {user: ...}"
            )
        return self

    @property
    def required(self) -> int:
        return (self.pool_size + self.max_overflow) * self.workers


@dataclass(frozen=True)
class Sessions:
    """The server's client backends, sorted."""

    ours: int
    """readycheck's: this check's own and its sibling checks'."""
    application: int
    """The application's, as ``application`` names them (0 when it is unset)."""
    other: int
    other_here: int
    """Of ``other``, those on the DSN's database (where the application's would be)."""
    hidden: int
    """Of the application's and the others, those whose type and state are hidden."""

    @property
    def total(self) -> int:
        return self.ours + self.application + self.other


@check("postgres.pool", params=PoolParams, category="database")
async def pool(p: PoolParams, ctx: Context) -> Outcome:
    """Check that the application's pools fit in the server's free connections.

    The rule: the sessions counted plus the connections the application's pools may open
    (`(pool_size + max_overflow) x workers`) must fit in `max_usage` of the usable
    connections (`max_connections` minus `superuser_reserved_connections` minus
    `reserved_connections` on PostgreSQL 16+).

    Which sessions are counted depends on what the deploy does. Name the application's
    sessions (`application`, by `application_name` and/or `user`) and say `deploy`:
    `rolling` counts every other session plus the application's current ones (the old
    pools still hold them while the new ones fill up); `replace` counts only the other
    sessions (the new pools take the old ones' place). Without `application`, the
    application's current sessions cannot be told apart: every session is counted, as in a
    rolling deploy, and the evidence says how many are on the application's database and
    may be its own.

    For example, with 97 usable connections and `max_usage: 0.8` (77 allowed), 12 other
    sessions, 8 of the application's now and pools of `(5 + 5) x 2` (20 required): a
    rolling deploy needs 12 + 8 + 20 = 40 (headroom 37), a replacing one 12 + 20 = 32
    (headroom 45).

    readycheck's own sessions are never counted, neither this check's nor those of the
    checks running beside it (every readycheck session is named
    `application_name=readycheck`), so the verdict does not depend on how many checks
    happen to be connected. The evidence shows every term: usable, readycheck's excluded,
    other sessions, the application's current, required, and the headroom left.
    """
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
    named = p.application
    ours, application, other, other_here, hidden, idle_count, long_count = await session.fetchone(
        _COUNTS,
        {
            **ages,
            "ours": APPLICATION_NAME,
            "identified": named is not None,
            "names": named.names if named else [],
            "users": named.users if named else [],
        },
    )
    sessions = Sessions(ours, application, other, other_here, hidden)
    required = p.required
    in_use = other + (application if p.deploy == "rolling" else 0)
    need = in_use + required
    headroom = allowed - need

    reserved_text = f" - {reserved} reserved_connections" if reserved_setting is not None else ""
    evidence = [
        f"max_connections {max_connections} - {superuser_reserved} "
        f"superuser_reserved_connections{reserved_text} = {usable} usable",
        f"{p.max_usage:.0%} of {usable} = {allowed:g} allowed",
        f"readycheck's own sessions, not counted: {ours} (this check's and those of the "
        f"checks beside it, application_name {APPLICATION_NAME})",
        *_session_lines(p, sessions, session.target.dbname),
        f"required: the application's pools may open ({p.pool_size} + {p.max_overflow}) x "
        f"{counted(p.workers, 'worker')} = {required}",
        f"{_sum(p, sessions)} = {need} of {allowed:g} allowed: "
        + (f"headroom {headroom}" if headroom >= 0 else f"{-headroom} over"),
    ]
    if hidden:
        evidence.append(
            f"{counted(hidden, 'session')} of other roles counted as client backends: their "
            f"type and state are hidden from {session.target.user} (grant pg_monitor to see "
            "them)"
        )
    metrics: dict[str, float] = {
        "max_connections": max_connections,
        "usable": usable,
        "allowed": allowed,
        "readycheck_sessions": ours,
        "other_sessions": other,
        "backends": in_use,
        "required": required,
        "headroom": headroom,
        "idle_in_transaction": idle_count,
        "long_transactions": long_count,
    }
    if named is not None:
        metrics["application_sessions"] = application
    problems: list[str] = []
    warnings: list[str] = []
    if headroom < 0:
        problems.append(
            f"{_sum(p, sessions)} exceed the {allowed:g} allowed ({p.max_usage:.0%} of "
            f"{usable} usable connections) by {-headroom}"
        )
    if idle_count or long_count:
        evidence.extend(await _offenders(session, ages))
    if idle_count:
        warnings.append(
            f"{counted(idle_count, 'session')} idle in transaction for "
            f"over {p.idle_in_transaction_after}"
        )
    if long_count:
        warnings.append(
            f"{counted(long_count, 'transaction')} open for over {p.long_transaction_after}"
        )

    if p.probe_connections:
        free = usable - sessions.total  # what is really free: readycheck's take room too
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
            remediation=_remedy(p),
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
        f"{_sum(p, sessions)} fit in the {allowed:g} allowed (headroom {headroom})",
        evidence=evidence,
        metrics=metrics,
    )


def _session_lines(p: PoolParams, sessions: Sessions, dbname: str) -> list[str]:
    if p.application is None:
        return [
            f"other sessions: {sessions.other}, {sessions.other_here} of them on database "
            f"{dbname}: some may be the application's own, counted here as in a rolling "
            "deploy (name them with application: to count them by the deploy)"
        ]
    current = f"the application's current sessions ({p.application}): {sessions.application}"
    if p.deploy == "replace":
        current += ", not counted: deploy replace, the new pools take their place"
    return [f"other sessions: {sessions.other}", current]


def _sum(p: PoolParams, sessions: Sessions) -> str:
    """The sum the verdict is on, term by term."""
    terms = [counted(sessions.other, "other session")]
    if p.application is not None and p.deploy == "rolling":
        terms.append(f"{sessions.application} of the application's now (deploy rolling)")
    terms.append(f"{p.required} required")
    return " + ".join(terms)


def _remedy(p: PoolParams) -> str:
    text = (
        "Raise max_connections, put a pooler (PgBouncer) in front, or shrink pool_size / "
        "max_overflow / workers."
    )
    if p.application is None:
        text += (
            " If some of the sessions counted are the application's own, name them "
            "(application:) and say what the deploy does (deploy: replace or rolling)."
        )
    elif p.deploy == "rolling":
        text += " If the deploy stops the old pools before it starts the new, say deploy: replace."
    return text


async def _offenders(session: Session, ages: dict[str, timedelta]) -> list[str]:
    rows = await session.fetch(_OFFENDERS, {**ages, "ours": APPLICATION_NAME})
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
