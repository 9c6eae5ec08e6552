"""alembic.safety: what the pending migrations would lock in production, and for how long.

For the revisions between the database's version and the scripts' heads (the walk
alembic.head does): render their SQL offline without env.py (render.py), parse each
statement with PostgreSQL's own parser and work out its locks (statements.py), lint it
with squawk (squawk.py) and readycheck's own rules (rules.py), and weigh every finding by
the live database: table sizes, traffic and the sessions holding locks now (catalog.py,
verdict.py). With ``trace: true``, the revisions also run for real on a throwaway
PostgreSQL holding a copy of the schema (schema_copy.py, trace.py), and the evidence says
which findings the trace confirmed. Nothing is ever written to the checked database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import Field

from readycheck.checks.alembic.scripts import (
    Scripts,
    ScriptsParams,
    VersionTableLocked,
    current_revisions,
    load_scripts,
)
from readycheck.checks.postgres.session import REPORT_MARGIN_SECONDS, with_session
from readycheck.registry import check
from readycheck.results import Outcome, Status
from readycheck.units import Duration, Size, counted

if TYPE_CHECKING:
    from readycheck.checks.alembic.catalog import Catalog
    from readycheck.checks.alembic.render import Rendering
    from readycheck.checks.alembic.rules import Finding
    from readycheck.checks.alembic.squawk import SquawkRun
    from readycheck.checks.alembic.statements import Statement
    from readycheck.checks.alembic.trace import Trace
    from readycheck.checks.alembic.verdict import Thresholds, Weighed
    from readycheck.checks.postgres.session import Session
    from readycheck.context import Context

# squawk rules about style rather than locks: left out unless a profile asks for them.
STYLE_RULES = [
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-text-field",
    "prefer-timestamp-tz",
    "prefer-timestamptz",
    "prefer-robust-stmts",
    "ban-char-field",
    "require-statement-timeout",
]
_SHOWN_NOTES = 5
T = TypeVar("T")


class SafetyParams(ScriptsParams):
    max_rows: int = Field(
        1_000_000,
        ge=0,
        description="A table with at least this many rows (estimated: pg_class.reltuples) "
        "is large: a lock that blocks it for a scan or a rewrite FAILs; on a smaller table "
        "the same finding WARNs.",
    )
    max_size: Size = Field(
        Size("1GB"),
        description="A table at least this big on disk (with its indexes and TOAST) is large too.",
    )
    scan_rate: Size = Field(
        Size("100MB"),
        description="How much PostgreSQL is assumed to read or rewrite per second while it "
        "holds a lock: only for the estimate of how long a scan or a rewrite lasts.",
    )
    long_transaction: Duration = Field(
        Duration("10s"),
        description="A session holding a conflicting lock on a table counts (FAIL: the "
        "migration would queue behind it, and the table's queries behind the migration) "
        "when its transaction has been open this long; shorter ones are ordinary traffic.",
    )
    traffic_window: Duration = Field(
        Duration("1s"),
        description="Read the tables' scan and write counters (pg_stat_user_tables) this "
        "far apart for their current rates; 0s shows the counts since statistics were "
        "reset instead.",
    )
    transaction_per_migration: bool = Field(
        False,
        description="env.py runs each revision in a transaction of its own (Alembic's "
        "transaction_per_migration); otherwise the whole upgrade runs in one transaction, "
        "as by Alembic's default.",
    )
    assume_lock_timeout: bool = Field(
        False,
        description="The migration environment sets lock_timeout for every migration "
        "(env.py, the role's settings): do not ask each revision to set it.",
    )
    squawk: str = Field(
        "squawk",
        description="The squawk program (`pip install 'readycheck[migrations]'`): a name "
        'looked up beside this Python and on PATH, or a path; "" runs readycheck\'s own '
        "rules only.",
    )
    squawk_exclude: list[str] = Field(
        default_factory=lambda: list(STYLE_RULES),
        description="squawk rules to leave out; by default those about style rather than "
        "locks (prefer-bigint-over-int, prefer-robust-stmts, ...).",
    )
    trace: bool = Field(
        False,
        description="Also run the pending revisions for real on a throwaway PostgreSQL "
        "(the demo's, on 127.0.0.1) loaded with this database's schema only, record the "
        "locks each statement holds, and roll back; never on the checked database. Needs "
        "PostgreSQL server binaries (`pip install 'readycheck[demo]'`) and a few seconds.",
    )
    trace_schema: Literal["auto", "catalogs", "pg_dump"] = Field(
        "auto",
        description="Where the trace's schema comes from: pg_dump --schema-only (read-only "
        "session, lock-wait timeout), or readycheck's session reading the catalogs; auto "
        "uses pg_dump when one at least as new as the server is found.",
    )


@check("alembic.safety", params=SafetyParams, category="database", timeout="30s")
async def safety(p: SafetyParams, ctx: Context) -> Outcome:
    """Check what the pending Alembic migrations would lock in production, and for how long."""
    scripts = await load_scripts(p, ctx)
    if isinstance(scripts, Outcome):
        return scripts
    return await with_session(
        p,
        ctx,
        lambda session: _analyse(p, ctx, scripts, session),
        # Unreachable, the database weighs nothing: the check could not do its work.
        unreachable=Status.ERROR,
    )


async def _analyse(p: SafetyParams, ctx: Context, scripts: Scripts, session: Session) -> Outcome:
    try:
        current = await current_revisions(p, session)
    except VersionTableLocked as locked:
        return locked.outcome
    if current is None:
        where = f"no version table {p.version_table_name}: every revision is pending"
    else:
        where = f"database at {scripts.labels(current)}" if current else "database at base"
    unknown = [revision for revision in current or () if revision not in scripts.parents]
    if unknown:
        return Outcome.warned(
            f"the database is at {', '.join(unknown)}, which these scripts do not know (it "
            "is ahead of this code, or on another branch): nothing here to analyse",
            evidence=[where],
            remediation="Deploy the code that has this revision; alembic.head reports the same.",
        )
    pending = scripts.pending(current or [])
    if not pending:
        return Outcome.passed(
            f"no migration pending ({where})", evidence=[where], metrics={"pending": 0.0}
        )
    try:
        import pglast  # noqa: F401
    except ImportError:
        return Outcome.errored(
            "alembic.safety needs pglast to parse the migrations' SQL",
            remediation="pip install 'readycheck[migrations]' (pglast and squawk).",
        )
    rendered = await _in_thread(
        ctx, "rendering the pending revisions", _render_and_parse, scripts, pending, p
    )
    if isinstance(rendered, Outcome):
        return rendered
    rendering, parsed = rendered
    return await _examine(p, ctx, session, scripts, pending, rendering, parsed, where)


def _render_and_parse(
    scripts: Scripts, pending: Sequence[str], p: SafetyParams
) -> tuple[Rendering, list[Statement]]:
    from readycheck.checks.alembic.render import render
    from readycheck.checks.alembic.statements import parse

    rendering = render(scripts, pending, transaction_per_migration=p.transaction_per_migration)
    return rendering, parse(rendering.chunks)


async def _examine(
    p: SafetyParams,
    ctx: Context,
    session: Session,
    scripts: Scripts,
    pending: Sequence[str],
    rendering: Rendering,
    parsed: list[Statement],
    where: str,
) -> Outcome:
    import asyncio

    from readycheck.checks.alembic import catalog as live
    from readycheck.checks.alembic.rules import lint, questions
    from readycheck.checks.alembic.verdict import Thresholds, Upgrade, outcome, unseen_holders

    columns, functions = questions(parsed)
    catalog = await live.read(
        session,
        tables=[entry.table for s in parsed for entry in s.locks],
        indexes=[entry.table for s in parsed for entry in s.index_locks],
        columns=columns,
        functions=functions,
    )
    statements = [s.with_index_tables(catalog.index_tables) for s in parsed]
    # squawk runs while the traffic counters are sampled.
    window = min(p.traffic_window.seconds, max(0.0, ctx.remaining() / 4))
    _, linted = await asyncio.gather(
        live.sample_traffic(session, catalog, window),
        _squawk(p, ctx, statements, catalog.server_version),
    )
    findings = lint(
        statements,
        catalog,
        assume_lock_timeout=p.assume_lock_timeout,
        long_transaction_s=p.long_transaction.seconds,
    )
    findings += _unrenderable(rendering)
    notes = [_rendered_note(rendering, statements, linted), *unseen_holders(catalog)]
    status = Status.WARN if rendering.unrenderable else Status.PASS
    agreed, more, overruled = _squawk_findings(linted, findings)
    findings += more
    notes += overruled
    traced: Trace | None = None
    if p.trace:
        ran = await _trace(p, ctx, session, scripts, pending, catalog.server_version)
        if isinstance(ran, str):
            notes.append(f"trace not run: {ran}")
            status = Status.WARN
        else:
            traced = ran
            findings += _trace_findings(traced, statements)
            notes.append(_trace_note(traced))
            if traced.failure:
                status = Status.WARN
    limits = Thresholds(p.max_rows, p.max_size.bytes, max(1, p.scan_rate.bytes))
    weighed = _weighed(findings, catalog, limits, agreed, traced)
    return outcome(
        weighed,
        Upgrade(
            pending=pending,
            labels={revision: scripts.label(revision) for revision in pending},
            statements=sum(1 for s in statements if s.kind != "transaction control"),
            head_lines=[f"{where}; pending, in apply order: {scripts.labels(pending)}"],
            notes=[ctx.redactor.redact(note) for note in notes],
            catalog=catalog,
        ),
        limits,
        status,
    )


async def _in_thread(
    ctx: Context, what: str, function: Callable[..., T], *args: object
) -> T | Outcome:
    """``function(*args)`` in a worker thread, within the check's time."""
    import asyncio

    limit = max(0.1, ctx.remaining() - REPORT_MARGIN_SECONDS)
    try:
        return await asyncio.wait_for(asyncio.to_thread(function, *args), timeout=limit)
    except TimeoutError:
        # The thread cannot be stopped; it ends when the revision that hangs does.
        return Outcome.errored(f"{what} took longer than {Duration(round(limit, 3))}")


def _unrenderable(rendering: Rendering) -> list[Finding]:
    from readycheck.checks.alembic.rules import Effect, Finding

    return [
        Finding(
            "unrenderable",
            problem.revision,
            f"cannot be rendered offline: {problem.reason}",
            Effect.UNKNOWN,
            safer="read it by hand, or turn on `trace: true` to run it on a copy of the "
            "schema"
            + (
                " (a data migration on a large table is a risk of its own)"
                if problem.needs_connection
                else ""
            ),
        )
        for problem in rendering.unrenderable
    ]


def _rendered_note(rendering: Rendering, statements: list[Statement], linted: SquawkRun) -> str:

    rendered = sum(1 for s in statements if s.kind != "transaction control")
    linters = (
        f"linted by {linted.note} and readycheck's own rules"
        if linted.ran
        else f"readycheck's own rules only ({linted.note})"
    )
    return f"{counted(rendered, 'statement')} rendered offline (env.py not run); {linters}"


async def _squawk(
    p: SafetyParams, ctx: Context, statements: list[Statement], server_version: int
) -> SquawkRun:
    from readycheck.checks.alembic import squawk

    if not p.squawk:
        return squawk.SquawkRun(False, "squawk turned off")
    program = squawk.find(p.squawk, ctx.base_dir)
    if program is None:
        return squawk.SquawkRun(
            False, f"squawk not found ({p.squawk}): pip install 'readycheck[migrations]'"
        )
    found = ctx.resolve(p.script_location or p.config or ".")
    return await squawk.run(
        program,
        statements,
        server_version=server_version,
        exclude=p.squawk_exclude,
        cwd=found,
        timeout_s=max(0.5, ctx.remaining() / 3),
    )


def _squawk_findings(
    linted: SquawkRun, findings: list[Finding]
) -> tuple[dict[int, list[str]], list[Finding], list[str]]:
    """squawk's violations: agreement with our findings (by id of the finding), findings
    of their own, and notes on those our rules overrule with the live database."""
    from readycheck.checks.alembic.rules import Effect, Finding
    from readycheck.checks.alembic.squawk import OVERLAPS

    agreed: dict[int, list[str]] = {}
    more: list[Finding] = []
    overruled: list[str] = []
    for violation in linted.violations:
        statement = violation.statement
        ours = [f for f in findings if f.statement is not None and f.statement == statement]
        overlapping = OVERLAPS.get(violation.rule)
        if overlapping is not None:
            matches = [f for f in ours if f.rule in overlapping]
            for match in matches:
                agreed.setdefault(id(match), []).append(f"squawk {violation.rule} agrees")
            if not matches and len(overruled) < _SHOWN_NOTES:
                overruled.append(
                    f"squawk's {violation.rule} on `{statement.short(60)}` not counted: "
                    "readycheck's rules, with the live database, find it safe here"
                )
            continue
        lock = max(statement.locks, key=lambda entry: entry.lock, default=None)
        more.append(
            Finding(
                f"squawk:{violation.rule}",
                statement.revision,
                violation.message,
                Effect.UNKNOWN,
                statement=statement,
                table=lock.table if lock else None,
                lock=lock.lock if lock else None,
                safer=violation.help,
                source="squawk",
            )
        )
    return agreed, more, overruled


async def _trace(
    p: SafetyParams,
    ctx: Context,
    session: Session,
    scripts: Scripts,
    pending: Sequence[str],
    server_version: int,
) -> Trace | str:
    """Run the trace; a string says why it could not run."""
    from readycheck.checks.alembic import schema_copy, trace
    from readycheck.checks.alembic.trace import TraceUnavailable

    schema: schema_copy.Schema | str = "pg_dump not asked for"
    if p.trace_schema != "catalogs":
        program = schema_copy.find_pg_dump()
        schema = (
            "pg_dump not found"
            if program is None
            else await schema_copy.from_pg_dump(
                program,
                p.dsn,
                server_version=server_version,
                statement_ms=session.limits.statement_ms,
                lock_ms=session.limits.lock_ms,
                connect_s=int(p.connect_timeout.seconds),
                timeout_s=max(1.0, ctx.remaining() / 3),
            )
        )
        if isinstance(schema, str) and p.trace_schema == "pg_dump":
            return ctx.redactor.redact(schema)
    if isinstance(schema, str):
        schema = await schema_copy.from_catalogs(session)
    statements = schema.statements
    try:
        ran = await _in_thread(
            ctx,
            "the trace",
            lambda: trace.run(
                statements,
                scripts,
                pending,
                transaction_per_migration=p.transaction_per_migration,
                timeout_s=max(1.0, ctx.remaining() - 2 * REPORT_MARGIN_SECONDS),
            ),
        )
    except TraceUnavailable as exc:
        return ctx.redactor.redact(str(exc))
    if isinstance(ran, Outcome):
        return ran.summary
    return dataclasses.replace(ran, source=schema.source)


def _trace_findings(traced: Trace, statements: list[Statement]) -> list[Finding]:
    """Locks the trace saw that reading the SQL did not predict."""
    from readycheck.checks.alembic.rules import Effect, Finding
    from readycheck.checks.alembic.statements import Statement as Parsed
    from readycheck.checks.alembic.trace import unexpected

    predicted = [(s.revision, entry) for s in statements for entry in s.locks]
    found = []
    for index, (step, taken) in enumerate(unexpected(traced, predicted)):
        statement = Parsed(
            revision=step.revision, sql=step.sql, index=len(statements) + index, locks=(taken,)
        )
        found.append(
            Finding(
                "trace-lock",
                step.revision,
                f"the trace saw it take {taken.lock.label} on {taken.table}, which its SQL "
                "alone does not show (a trigger, a cascade, or a revision that could not be "
                "rendered)",
                Effect.UNKNOWN,
                statement=statement,
                table=taken.table,
                lock=taken.lock,
                source="trace",
            )
        )
    return found


def _trace_note(traced: Trace) -> str:

    note = (
        f"trace: {counted(len(traced.statements), 'statement')} run on a throwaway {traced.server} "
        f"with the schema read {traced.source}, then rolled back"
    )
    if traced.schema_problems:
        shown = "; ".join(traced.schema_problems[:2])
        note += f"; {len(traced.schema_problems)} schema statements refused there ({shown})"
    if traced.failure:
        note += f"; the run stopped at {traced.failure}"
    return note


def _weighed(
    findings: list[Finding],
    catalog: Catalog,
    limits: Thresholds,
    agreed: dict[int, list[str]],
    traced: Trace | None,
) -> list[Weighed]:
    from readycheck.checks.alembic.trace import confirms
    from readycheck.checks.alembic.verdict import weigh

    weighed = []
    for finding in findings:
        found = weigh(finding, catalog, limits)
        if found is None:
            continue
        notes = list(agreed.get(id(finding), []))
        if traced is not None and finding.rule == "unrenderable":
            notes.append(_what_the_trace_saw(traced, finding.revision))
        if (
            traced is not None
            and finding.source != "trace"
            and finding.table is not None
            and finding.lock is not None
            and finding.lock.blocks
        ):
            seen = confirms(traced, finding.revision, finding.table, finding.lock)
            notes.append("trace confirmed" if seen else "trace did not see this lock")
        weighed.append(dataclasses.replace(found, notes=tuple(notes)))
    return weighed


def _what_the_trace_saw(traced: Trace, revision: str) -> str:
    """The locks a revision that could not be rendered took when the trace ran it."""

    ran = [s for s in traced.statements if s.revision == revision]
    if not ran:
        return "the trace did not reach it"
    taken: dict[str, str] = {}
    for statement in ran:
        for entry in sorted(statement.new, key=lambda e: -e.lock):
            taken.setdefault(str(entry.table), entry.lock.label)
    locks = ", ".join(f"{lock} on {table}" for table, lock in taken.items()) or "no table lock"
    return f"the trace ran {counted(len(ran), 'statement')} of it: {locks}"
