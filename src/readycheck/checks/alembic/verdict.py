"""Each finding weighed by the live database, and the check's outcome.

A finding FAILs when the statement will fail, when it would queue behind a session
holding a conflicting lock for long, or when it blocks the application's writes (or
reads) for a scan or a rewrite of a large table (``max_rows`` or ``max_size``). The same
finding on a small table WARNs, as do questions for the reviewer (a dropped column),
missing lock timeouts, squawk's findings, unparsed statements and revisions that could
not be rendered. A data migration WARNs on a large table only.

The evidence is one line per statement with findings, worst first: the revision, the SQL
(shortened), the lock and the table it blocks with the table's size and traffic, each
rule with its problem (and whether squawk agreed, or the trace confirmed it), and the
safer form. ``data`` carries every finding for JSON readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from readycheck.checks.alembic.rules import Effect, Finding
from readycheck.checks.alembic.statements import Lock, Statement, Table
from readycheck.results import Outcome, Status
from readycheck.units import counted, format_bytes, format_duration_ms

if TYPE_CHECKING:
    from readycheck.checks.alembic.catalog import Catalog, TableFacts, Traffic

SHOWN_STATEMENTS = 15


@dataclass(frozen=True)
class Thresholds:
    max_rows: int
    max_bytes: int
    scan_rate: int
    """Bytes per second read or rewritten under a lock, for the estimates."""


@dataclass(frozen=True)
class Weighed:
    finding: Finding
    status: Status
    facts: TableFacts | None
    seconds: float | None
    """How long the lock is estimated to last (scans and rewrites only)."""
    notes: tuple[str, ...] = ()
    """squawk agreeing, the trace confirming."""


def is_large(facts: TableFacts, limits: Thresholds) -> bool:
    rows = facts.rows or 0
    return rows >= limits.max_rows or facts.total_bytes >= limits.max_bytes


def weigh(finding: Finding, catalog: Catalog, limits: Thresholds) -> Weighed | None:
    """The finding's status at the table's current size; None when it does not matter."""
    facts = catalog.facts(finding.table) if finding.table is not None else None
    seconds = None
    if facts is not None and finding.effect in (Effect.SCAN, Effect.REWRITE):
        size = facts.table_bytes if finding.effect is Effect.SCAN else facts.total_bytes
        seconds = size / max(1, limits.scan_rate)
    blocks = finding.lock is not None and bool(finding.lock.blocks)
    large = facts is not None and is_large(facts, limits)
    if finding.rule == "add-column-not-null":
        # It fails on a table with rows: fine on an empty one, a question on one the
        # database does not have (yet).
        if facts is None:
            status = Status.WARN
        elif facts.table_bytes == 0 and not facts.rows:
            return None
        else:
            status = Status.FAIL
    elif finding.effect is Effect.FAILS or finding.rule == "waits-for-session":
        status = Status.FAIL
    elif finding.effect in (Effect.SCAN, Effect.REWRITE):
        status = Status.FAIL if blocks and large else Status.WARN
    elif finding.effect is Effect.ROWS:
        if not large:
            return None
        status = Status.WARN
    else:
        status = Status.WARN
    return Weighed(finding, status, facts, seconds)


def table_facts(facts: TableFacts | None, table: Table | None = None) -> str:
    """``orders: about 52,000,000 rows, 7.1 GB; 3 sequential + 120 index scans/s, 40 row
    writes/s``."""
    if facts is None:
        return f"{table}: not found in the database" if table is not None else ""
    rows = "rows unknown (never analyzed)"
    if facts.rows is not None:
        rows = f"about {int(facts.rows):,} rows"
    parts = [f"{facts.table}: {rows}, {format_bytes(facts.total_bytes)}"]
    if facts.traffic is not None:
        parts.append(_traffic(facts.traffic))
    return "; ".join(parts)


def unseen_holders(catalog: Catalog) -> list[str]:
    """Notes on tables locked by sessions whose transaction age this role may not read
    (pg_stat_activity hides other roles' sessions without pg_read_all_stats)."""
    notes = []
    for table, facts in catalog.tables.items():
        hidden = {holder.pid for holder in facts.holders if holder.age_s is None}
        if hidden:
            notes.append(
                f"{counted(len(hidden), 'session')} of other roles "
                f"{'holds' if len(hidden) == 1 else 'hold'} locks on {table} "
                "for how long this role may not see, so whether the migration would wait "
                "behind them is unknown (grant it pg_read_all_stats)"
            )
    return notes


def _traffic(traffic: Traffic) -> str:
    if traffic.per_second:
        return (
            f"{_rate(traffic.seq_scans)} sequential + {_rate(traffic.idx_scans)} index scans/s, "
            f"{_rate(traffic.row_writes)} row writes/s"
        )
    return (
        f"{int(traffic.seq_scans):,} sequential + {int(traffic.idx_scans):,} index scans, "
        f"{int(traffic.row_writes):,} row writes since statistics were reset"
    )


def _rate(value: float) -> str:
    return f"{value:.1f}" if 0 < value < 10 else f"{value:,.0f}"


def _estimate(weighed: Weighed, limits: Thresholds) -> str:
    if weighed.seconds is None:
        return ""
    what = "scans" if weighed.finding.effect is Effect.SCAN else "rewrites"
    took = format_duration_ms(weighed.seconds * 1000)
    size = format_bytes(weighed.seconds * limits.scan_rate)
    return f" (it {what} {size}: about {took} at {format_bytes(limits.scan_rate)}/s)"


@dataclass(frozen=True)
class Upgrade:
    """What the outcome says besides the findings: the upgrade examined."""

    pending: Sequence[str]
    labels: dict[str, str]
    statements: int
    head_lines: Sequence[str]
    notes: Sequence[str]
    catalog: Catalog


def outcome(
    weighed: Sequence[Weighed], context: Upgrade, limits: Thresholds, notes_status: Status
) -> Outcome:
    """The check's outcome from every weighed finding; ``notes_status`` is the status the
    notes alone call for (WARN when a revision was not rendered, squawk failed, ...)."""
    status = max([w.status for w in weighed] + [notes_status], key=lambda s: s.rank)
    by_statement = _group(weighed)
    lines = [_line(group, limits, context) for group in by_statement[:SHOWN_STATEMENTS]]
    if len(by_statement) > SHOWN_STATEMENTS:
        lines.append(
            f"and {len(by_statement) - SHOWN_STATEMENTS} more statements with findings "
            "(every one is in the JSON results)"
        )
    failing = [w for w in weighed if w.status is Status.FAIL]
    warning = [w for w in weighed if w.status is Status.WARN]
    revisions = len(context.pending)
    pending = counted(revisions, "pending revision")
    if failing:
        unsafe = {
            w.finding.statement.index if w.finding.statement else w.finding.revision
            for w in failing
        }
        first = by_statement[0]
        summary = (
            f"{counted(len(unsafe), 'pending statement')} unsafe at the "
            f"current sizes: {_headline(first, limits)}"
        )
    elif warning:
        first = by_statement[0]
        summary = (
            f"{counted(len(warning), 'finding')} in {pending}, none "
            f"blocking at the current sizes: {_headline(first, limits)}"
        )
    elif notes_status is Status.WARN:
        summary = f"{pending}: {context.notes[0]}" if context.notes else pending
    else:
        summary = (
            f"{pending}, {counted(context.statements, 'statement')}: "
            "none would block the application for long at the current sizes"
        )
    remedies = []
    for w in sorted(weighed, key=lambda w: -w.status.rank):
        if w.finding.safer and w.finding.safer not in remedies:
            remedies.append(w.finding.safer)
    metrics = {
        "pending": float(revisions),
        "statements": float(context.statements),
        "findings": float(len(weighed)),
        "blocking": float(len(failing)),
        "estimated_lock_s": max((w.seconds or 0.0 for w in failing), default=0.0),
    }
    return Outcome(
        status,
        summary,
        (*context.head_lines, *context.notes, *lines),
        metrics,
        ("Safer: " + "; ".join(remedies[:3]) + ".") if remedies else None,
        {"findings": [_data(w) for w in weighed]},
    )


def _group(weighed: Sequence[Weighed]) -> list[list[Weighed]]:
    """Findings by statement (a revision's own findings by revision), worst first."""
    groups: dict[object, list[Weighed]] = {}
    for w in weighed:
        key: object = w.finding.statement.index if w.finding.statement else w.finding.revision
        groups.setdefault(key, []).append(w)
    return sorted(
        groups.values(),
        key=lambda group: (
            -max(w.status.rank for w in group),
            group[0].finding.statement.index if group[0].finding.statement else -1,
        ),
    )


def _headline(group: list[Weighed], limits: Thresholds) -> str:
    worst = max(group, key=lambda w: w.status.rank)
    finding = worst.finding
    where = f"{finding.revision} "
    if finding.statement is None:
        return where + finding.problem
    what = finding.statement.kind
    if finding.table is not None and finding.lock is not None:
        size = ""
        if worst.facts is not None:
            rows = f"{int(worst.facts.rows):,} rows, " if worst.facts.rows is not None else ""
            size = f" ({rows}{format_bytes(worst.facts.total_bytes)})"
        if finding.effect is Effect.FAILS:
            return f"{where}{what} on {finding.table}{size} will fail [{finding.rule}]"
        blocks = finding.lock.blocks or "nothing"
        took = ""
        if worst.seconds is not None:
            took = f" for about {format_duration_ms(worst.seconds * 1000)}"
        return f"{where}{what} on {finding.table}{size} blocks its {blocks}{took} [{finding.rule}]"
    return f"{where}{what}: {finding.problem} [{finding.rule}]"


def _line(group: list[Weighed], limits: Thresholds, context: Upgrade) -> str:
    """One statement's evidence line; see the module docstring."""
    status = max((w.status for w in group), key=lambda s: s.rank)
    first = group[0].finding
    revision = context.labels.get(first.revision, first.revision)
    parts = [f"{status.value} {revision}"]
    statement: Statement | None = first.statement
    if statement is not None:
        parts.append(f"`{statement.short()}`")
        tables: dict[Table, Lock] = {}
        for entry in statement.locks:
            tables[entry.table] = max(entry.lock, tables.get(entry.table, entry.lock))
        for table, lock in tables.items():
            blocks = f", blocking {lock.blocks}" if lock.blocks else ""
            facts = table_facts(context.catalog.facts(table), table)
            parts.append(f"takes {lock.label} on {table}{blocks} ({facts})")
    problems = []
    for w in group:
        notes = f"; {', '.join(w.notes)}" if w.notes else ""
        problems.append(f"{w.finding.problem}{_estimate(w, limits)} [{w.finding.rule}{notes}]")
    parts.append("; ".join(problems))
    safer = next((w.finding.safer for w in group if w.finding.safer), None)
    if safer:
        parts.append(f"safer: {safer}")
    return " · ".join(parts)


def _data(w: Weighed) -> dict[str, Any]:
    finding = w.finding
    return {
        "status": w.status.value,
        "rule": finding.rule,
        "source": finding.source,
        "revision": finding.revision,
        "sql": finding.statement.sql if finding.statement else None,
        "table": str(finding.table) if finding.table else None,
        "lock": finding.lock.label if finding.lock else None,
        "effect": finding.effect.value,
        "problem": finding.problem,
        "safer": finding.safer,
        "rows": w.facts.rows if w.facts else None,
        "bytes": w.facts.total_bytes if w.facts else None,
        "estimated_lock_s": w.seconds,
        "notes": list(w.notes),
    }
