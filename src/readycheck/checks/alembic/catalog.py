"""What the live database says about the tables the pending statements touch, read in
readycheck's safe session (read-only, statement and lock timeouts).

Per table: estimated rows (``pg_class.reltuples``, as of the last ANALYZE or VACUUM) and
size (``pg_total_relation_size``); its scans and row writes (``pg_stat_user_tables``),
sampled twice ``window`` apart for a current rate; and the sessions whose transactions
hold a lock on it now (``pg_locks``). Besides: the current type of columns whose type a
statement changes, the validated ``CHECK (col IS NOT NULL)`` constraints (which let
``SET NOT NULL`` skip its scan), which functions named in column defaults are volatile
(``pg_proc.provolatile``), and the server's version. Nothing here reads a user table.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from readycheck.checks.alembic.statements import Table

if TYPE_CHECKING:
    from readycheck.checks.postgres.session import Session


@dataclass(frozen=True)
class Holder:
    """A session holding a lock on a table when the check looked."""

    pid: int
    mode: str
    application: str | None
    state: str | None
    age_s: float | None
    """How long its transaction has been open; None when pg_stat_activity hides it."""


@dataclass(frozen=True)
class Traffic:
    seq_scans: float
    idx_scans: float
    row_writes: float
    per_second: bool
    """Rates over the sampling window; otherwise counts since statistics were reset."""


@dataclass(frozen=True)
class TableFacts:
    table: Table
    oid: int
    rows: float | None
    """Estimated rows; None when the table was never analyzed."""
    total_bytes: int
    """Table, indexes and TOAST."""
    table_bytes: int
    traffic: Traffic | None = None
    holders: tuple[Holder, ...] = ()


@dataclass(frozen=True)
class ColumnType:
    formatted: str
    """As PostgreSQL writes it: ``character varying(20)``."""
    name: str
    """pg_type.typname: ``varchar``."""
    typmod: int


@dataclass
class Catalog:
    server_version: int = 0
    tables: dict[Table, TableFacts] = field(default_factory=dict)
    index_tables: dict[Table, Table] = field(default_factory=dict)
    """The table of each index a statement names alone (DROP INDEX)."""
    column_types: dict[tuple[Table, str], ColumnType] = field(default_factory=dict)
    not_null_checks: set[tuple[Table, str]] = field(default_factory=set)
    volatile: dict[str, bool] = field(default_factory=dict)
    """Function name -> whether any function of that name is volatile."""

    def facts(self, table: Table) -> TableFacts | None:
        return self.tables.get(table)


_REGCLASS = (
    "to_regclass(CASE WHEN t.schema IS NULL THEN quote_ident(t.name)"
    " ELSE quote_ident(t.schema) || '.' || quote_ident(t.name) END)"
)


async def read(
    session: Session,
    tables: Iterable[Table],
    indexes: Iterable[Table],
    columns: Iterable[tuple[Table, str]],
    functions: Iterable[str],
) -> Catalog:
    """One read of everything but traffic rates (see :func:`sample_traffic`)."""
    catalog = Catalog()
    (catalog.server_version,) = await session.fetchone(
        "SELECT current_setting('server_version_num')::int"
    )
    index_list = sorted(set(indexes), key=str)
    if index_list:
        rows = await session.fetch(
            "SELECT t.ord, c.relname, n.nspname, pg_table_is_visible(c.oid)"
            " FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(schema, name, ord)"
            f" JOIN pg_index i ON i.indexrelid = {_REGCLASS}"
            " JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace",
            ([i.schema for i in index_list], [i.name for i in index_list]),
        )
        for ord_, name, schema, visible in rows:
            catalog.index_tables[index_list[ord_ - 1]] = Table(name, None if visible else schema)
    table_list = sorted(set(tables) | set(catalog.index_tables.values()), key=str)
    if table_list:
        rows = await session.fetch(
            "SELECT t.ord, c.oid, c.reltuples, pg_total_relation_size(c.oid),"
            " pg_relation_size(c.oid)"
            " FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(schema, name, ord)"
            f" JOIN pg_class c ON c.oid = {_REGCLASS}"
            " WHERE c.relkind IN ('r', 'p', 'm')",
            ([t.schema for t in table_list], [t.name for t in table_list]),
        )
        for ord_, oid, reltuples, total, size in rows:
            table = table_list[ord_ - 1]
            rows_estimate = float(reltuples) if reltuples is not None and reltuples >= 0 else None
            catalog.tables[table] = TableFacts(
                table, int(oid), rows_estimate, int(total or 0), int(size or 0)
            )
    await _columns(session, catalog, columns)
    await _not_null_checks(session, catalog)
    names = sorted(set(functions))
    if names:
        rows = await session.fetch(
            "SELECT proname, bool_or(provolatile = 'v') FROM pg_proc"
            " WHERE proname = ANY(%s) GROUP BY proname",
            (names,),
        )
        catalog.volatile = {str(name): bool(volatile) for name, volatile in rows}
    return catalog


async def _columns(
    session: Session, catalog: Catalog, columns: Iterable[tuple[Table, str]]
) -> None:
    wanted = [(t, c) for t, c in sorted(set(columns), key=str) if t in catalog.tables]
    if not wanted:
        return
    rows = await session.fetch(
        "SELECT t.ord, format_type(a.atttypid, a.atttypmod), ty.typname, a.atttypmod"
        " FROM unnest(%s::oid[], %s::text[]) WITH ORDINALITY AS t(rel, col, ord)"
        " JOIN pg_attribute a ON a.attrelid = t.rel AND a.attname = t.col"
        " AND NOT a.attisdropped JOIN pg_type ty ON ty.oid = a.atttypid",
        ([catalog.tables[t].oid for t, _ in wanted], [c for _, c in wanted]),
    )
    for ord_, formatted, name, typmod in rows:
        catalog.column_types[wanted[ord_ - 1]] = ColumnType(str(formatted), str(name), typmod)


_NOT_NULL_CHECK = re.compile(r'^CHECK \(+"?([^"()]+?)"? IS NOT NULL\)+$')


async def _not_null_checks(session: Session, catalog: Catalog) -> None:
    by_oid = {facts.oid: table for table, facts in catalog.tables.items()}
    if not by_oid:
        return
    rows = await session.fetch(
        "SELECT conrelid, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE contype = 'c' AND convalidated AND conrelid = ANY(%s)",
        (list(by_oid),),
    )
    for oid, definition in rows:
        match = _NOT_NULL_CHECK.match(str(definition))
        if match:
            catalog.not_null_checks.add((by_oid[oid], match.group(1)))


async def sample_traffic(session: Session, catalog: Catalog, window_s: float) -> None:
    """Scan and write rates of the catalog's tables over ``window_s`` (or, with 0, the
    counts since statistics were reset), and the sessions holding locks on them."""
    if not catalog.tables:
        return
    oids = [facts.oid for facts in catalog.tables.values()]
    first = await _counters(session, oids)
    started = time.monotonic()
    second: dict[int, tuple[float, float, float]] = {}
    if window_s > 0:
        await asyncio.sleep(window_s)
        second = await _counters(session, oids)
    elapsed = max(time.monotonic() - started, 1e-3)
    holders = await _holders(session, oids)
    for table, facts in list(catalog.tables.items()):
        if facts.oid not in first:
            continue
        before = first[facts.oid]
        if facts.oid in second:
            seq, idx, writes = (
                max(0.0, (b - a) / elapsed) for a, b in zip(before, second[facts.oid], strict=True)
            )
            traffic = Traffic(seq, idx, writes, per_second=True)
        else:
            traffic = Traffic(*before, per_second=False)
        catalog.tables[table] = replace(
            facts, traffic=traffic, holders=tuple(holders.get(facts.oid, ()))
        )


async def _counters(session: Session, oids: list[int]) -> dict[int, tuple[float, float, float]]:
    rows = await session.fetch(
        "SELECT relid, coalesce(seq_scan, 0), coalesce(idx_scan, 0),"
        " n_tup_ins + n_tup_upd + n_tup_del"
        " FROM pg_stat_user_tables WHERE relid = ANY(%s)",
        (oids,),
    )
    return {int(oid): (float(seq), float(idx), float(writes)) for oid, seq, idx, writes in rows}


async def _holders(session: Session, oids: list[int]) -> dict[int, list[Holder]]:
    rows = await session.fetch(
        "SELECT l.relation, l.mode, l.pid, a.application_name, a.state,"
        " extract(epoch FROM now() - a.xact_start)"
        " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'relation' AND l.granted AND l.relation = ANY(%s)"
        " AND l.pid <> pg_backend_pid() ORDER BY l.pid",
        (oids,),
    )
    found: dict[int, list[Holder]] = {}
    for relation, mode, pid, application, state, age in rows:
        found.setdefault(int(relation), []).append(
            Holder(
                pid=int(pid),
                mode=str(mode),
                application=application or None,
                state=state or None,
                age_s=float(age) if age is not None else None,
            )
        )
    return found
