"""postgres.indexes: the indexes the release relies on exist, by definition, and are valid.

An index is matched by what it is (table, key columns in order, access method,
uniqueness, predicate), read from the catalogs, never by its name: a name alone does not
make an index right, and a differently named index with the right definition serves the
queries just as well (the evidence says so).

Columns and predicates are compared as PostgreSQL normalises them. Plain column names
compare directly; for an expression or a predicate written differently from how
PostgreSQL prints it (``status in ('a','b')`` vs ``status = ANY (ARRAY['a'::text, ...])``),
both are handed to the planner (``EXPLAIN (VERBOSE)`` of a SELECT of those columns under
that WHERE, index scans disabled) and the plans compared: one normaliser for both sides.
EXPLAIN runs nothing, in a read-only session.

Invalid indexes (``pg_index.indisvalid`` false: a failed ``CREATE INDEX CONCURRENTLY``) are
reported except those still being built (``pg_stat_progress_create_index``), which are
invalid until the build ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from readycheck.checks.postgres import PostgresParams
from readycheck.checks.postgres.session import with_session
from readycheck.registry import check
from readycheck.results import Outcome
from readycheck.units import counted

if TYPE_CHECKING:
    import psycopg

    from readycheck.checks.postgres.session import Session
    from readycheck.context import Context

Method = Literal["btree", "hash", "gist", "gin", "brin", "spgist"]

_SIMPLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_QUOTED_NAME = re.compile(r'^"((?:[^"]|"")+)"$')
_QUOTES = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")""")
# The planner must show every predicate as a Filter on a scan of the table, not fold it
# into an index scan (it would, for the very partial index we are comparing).
_NO_INDEX_SCANS = {
    "enable_indexscan": "off",
    "enable_indexonlyscan": "off",
    "enable_bitmapscan": "off",
}

_INDEXES = """
SELECT x.indexrelid, x.indrelid, c.relname, i.relname, am.amname, x.indisunique, x.indisvalid,
       ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, true)
             FROM generate_series(1, x.indnkeyatts) AS k ORDER BY k),
       pg_get_expr(x.indpred, x.indrelid, true),
       x.indkey::int2[]
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_am am ON am.oid = i.relam
WHERE c.relnamespace = %s
ORDER BY c.relname, i.relname
"""

_BEING_BUILT = """
SELECT index_relid, relid FROM pg_stat_progress_create_index
WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

_FOREIGN_KEYS = """
SELECT con.conname, c.relname, f.relname, con.conrelid, con.conkey::int2[],
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.n)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_class f ON f.oid = con.confrelid
WHERE con.contype = 'f' AND c.relnamespace = %s AND con.conparentid = 0
ORDER BY c.relname, con.conname
"""


class IndexSpec(BaseModel):
    """One index the release needs, by definition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(min_length=1, description="The table the index is on.")
    columns: list[str] = Field(
        min_length=1,
        description="Key columns in order; an expression is written as PostgreSQL would "
        "accept it in CREATE INDEX, e.g. lower(email).",
    )
    unique: bool | None = Field(
        None, description="Whether it must be unique (true) or not (false); unset: either."
    )
    method: Method | None = Field(None, description="Access method; unset: any.")
    where: str | None = Field(
        None,
        description="The predicate of a partial index, e.g. deleted_at IS NULL; unset: the "
        "index must not be partial.",
    )
    name: str | None = Field(
        None,
        description="The name it is expected under, for the evidence; a differently named "
        "index with this definition still passes.",
    )


class IndexesParams(PostgresParams):
    schema_name: str = Field(
        "public", alias="schema", min_length=1, description="The schema of the tables."
    )
    indexes: list[IndexSpec] = Field(
        default_factory=list, description="The indexes that must exist, by definition."
    )
    check_invalid: bool = Field(
        True,
        description="FAIL on any invalid index in the schema (a failed CREATE INDEX "
        "CONCURRENTLY), except one still being built.",
    )
    check_fk_indexes: bool = Field(
        False,
        description="WARN on foreign keys whose columns lead no index (deletes and joins on "
        "the referenced table scan the referencing one).",
    )


@dataclass(frozen=True)
class _Index:
    oid: int
    table_oid: int
    table: str
    name: str
    method: str
    unique: bool
    valid: bool
    columns: tuple[str, ...]
    predicate: str | None
    attnums: tuple[int, ...]

    def describe(self) -> str:
        return _describe(self.unique, self.method, self.table, self.columns, self.predicate)


@check("postgres.indexes", params=IndexesParams, category="database")
async def indexes(p: IndexesParams, ctx: Context) -> Outcome:
    """Check that required indexes exist by definition, none is invalid, FKs are indexed."""
    return await with_session(p, ctx, lambda session: _Evaluation(p, session).run())


class _Evaluation:
    def __init__(self, p: IndexesParams, session: Session) -> None:
        self.p = p
        self.session = session
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.evidence: list[str] = []
        self.remedies: list[str] = []
        self.forms: dict[tuple[str, tuple[str, ...], str | None], str | None] = {}

    async def run(self) -> Outcome:
        p = self.p
        namespace = await self.session.fetch(
            "SELECT oid FROM pg_namespace WHERE nspname = %s", (p.schema_name,)
        )
        if not namespace:
            return Outcome.failed(f"schema {p.schema_name} does not exist")
        schema_oid = namespace[0][0]
        found = [
            _Index(
                oid=oid,
                table_oid=table_oid,
                table=table,
                name=name,
                method=method,
                unique=unique,
                valid=valid,
                columns=tuple(columns),
                predicate=predicate,
                attnums=tuple(attnums),
            )
            for (
                oid,
                table_oid,
                table,
                name,
                method,
                unique,
                valid,
                columns,
                predicate,
                attnums,
            ) in await self.session.fetch(_INDEXES, (schema_oid,))
        ]
        tables = {
            name
            for (name,) in await self.session.fetch(
                "SELECT relname FROM pg_class WHERE relnamespace = %s AND relname = ANY(%s)",
                (schema_oid, [spec.table for spec in p.indexes]),
            )
        }
        missing = 0
        for position, spec in enumerate(p.indexes):
            if not await self._required(position, spec, found, tables):
                missing += 1
        invalid = await self._invalid(found) if p.check_invalid else 0
        unindexed = await self._foreign_keys(schema_oid, found) if p.check_fk_indexes else 0

        metrics = {
            "required": float(len(p.indexes)),
            "missing": float(missing),
            "invalid": float(invalid),
            "unindexed_fks": float(unindexed),
        }
        remediation = "; ".join(dict.fromkeys(self.remedies)) or None
        if self.problems:
            return Outcome.failed(
                "; ".join(self.problems + self.warnings),
                evidence=self.evidence,
                metrics=metrics,
                remediation=remediation,
            )
        if self.warnings:
            return Outcome.warned(
                "; ".join(self.warnings),
                evidence=self.evidence,
                metrics=metrics,
                remediation=remediation,
            )
        checked = [f"{len(p.indexes)} required indexes present"] if p.indexes else []
        if p.check_invalid:
            checked.append("no invalid index")
        if p.check_fk_indexes:
            checked.append("every foreign key indexed")
        return Outcome.passed(
            ", ".join(checked) + f" in {p.schema_name}" if checked else "nothing to check",
            evidence=self.evidence,
            metrics=metrics,
        )

    # -- required indexes --------------------------------------------------------------

    async def _required(
        self, position: int, spec: IndexSpec, found: list[_Index], tables: set[str]
    ) -> bool:
        wanted = _describe(spec.unique, spec.method, spec.table, tuple(spec.columns), spec.where)
        if spec.table not in tables:
            self.problems.append(f"table {self.p.schema_name}.{spec.table} does not exist")
            self.evidence.append(f"missing {wanted}: no table {spec.table}")
            return False
        on_table = [index for index in found if index.table == spec.table]
        matches = [index for index in on_table if await self._matches(spec, index)]
        good = [index for index in matches if index.valid]
        if good:
            best = next((index for index in good if index.name == spec.name), good[0])
            if spec.name and best.name != spec.name:
                self.evidence.append(
                    f"{spec.table}: no index named {spec.name}, but {best.name} has the "
                    f"definition ({best.describe()})"
                )
            else:
                self.evidence.append(f"present: {best.name} ({best.describe()})")
            return True
        if matches:
            names = ", ".join(index.name for index in matches)
            self.problems.append(f"{names} on {spec.table} has the definition but is invalid")
            self.evidence.append(f"invalid: {names} ({matches[0].describe()})")
            self.remedies.append(
                f"REINDEX INDEX CONCURRENTLY {self.p.schema_name}.{matches[0].name}"
            )
            return False
        self.problems.append(f"missing {wanted}")
        self.evidence.append(f"missing {wanted}")
        named = next((index for index in found if spec.name and index.name == spec.name), None)
        if named is not None:
            self.evidence.append(f"{named.name} exists but is another index: {named.describe()}")
        elif on_table:
            shown = "; ".join(f"{index.name} ({index.describe()})" for index in on_table[:5])
            self.evidence.append(f"indexes on {spec.table}: {shown}")
        self.remedies.append(_create_statement(self.p.schema_name, spec))
        return False

    async def _matches(self, spec: IndexSpec, index: _Index) -> bool:
        if len(index.columns) != len(spec.columns):
            return False
        if spec.unique is not None and index.unique != spec.unique:
            return False
        if spec.method is not None and index.method != spec.method:
            return False
        if (spec.where is None) != (index.predicate is None):
            return False
        same_columns = all(map(_same_text, spec.columns, index.columns))
        same_predicate = spec.where is None or _same_text(spec.where, index.predicate or "")
        if same_columns and same_predicate:
            return True
        # Written differently: let the planner normalise both sides.
        wanted = await self._normal_form(spec.table, tuple(spec.columns), spec.where)
        if wanted is None:
            return False
        return wanted == await self._normal_form(index.table, index.columns, index.predicate)

    async def _normal_form(
        self, table: str, columns: tuple[str, ...], where: str | None
    ) -> str | None:
        import psycopg
        from psycopg import sql

        key = (table, columns, where)
        if key in self.forms:
            return self.forms[key]
        # The profile author's own SQL, run under EXPLAIN (plans, executes nothing) in a
        # read-only session: no value of a secret goes into it.
        selected: list[sql.Composable] = [sql.SQL(c) for c in columns]
        query = sql.SQL("EXPLAIN (VERBOSE, COSTS OFF) SELECT {} FROM {}{}").format(
            sql.SQL(", ").join(selected),
            sql.Identifier(self.p.schema_name, table),
            sql.SQL(f" WHERE {where}") if where else sql.SQL(""),
        )
        unreadable = (
            psycopg.errors.SyntaxError,
            psycopg.errors.UndefinedColumn,
            psycopg.errors.UndefinedFunction,
            psycopg.errors.DatatypeMismatch,
            psycopg.errors.UndefinedObject,
        )
        try:
            rows = await self.session.fetch(query, settings=_NO_INDEX_SCANS)
        except unreadable as exc:
            self._unreadable(table, columns, where, exc)
            form = None
        else:
            form = "\n".join(str(row[0]) for row in rows)
        self.forms[key] = form
        return form

    def _unreadable(
        self, table: str, columns: tuple[str, ...], where: str | None, exc: psycopg.Error
    ) -> None:
        said = exc.diag.message_primary or type(exc).__name__
        written = f"({', '.join(columns)})" + (f" WHERE {where}" if where else "")
        self.evidence.append(f"PostgreSQL cannot read {table} {written}: {said}")

    # -- invalid indexes ---------------------------------------------------------------

    async def _invalid(self, found: list[_Index]) -> int:
        invalid = [index for index in found if not index.valid]
        if not invalid:
            return 0
        builds = await self.session.fetch(_BEING_BUILT)
        building = {index_oid for index_oid, _ in builds if index_oid}
        hidden = sum(1 for index_oid, relid in builds if index_oid is None or relid is None)
        left = [index for index in invalid if index.oid not in building]
        for index in invalid:
            if index.oid in building:
                self.evidence.append(f"{index.name} is being built right now (not counted)")
        if not left:
            return 0
        names = ", ".join(f"{index.name} (on {index.table})" for index in left)
        if hidden:
            self.warnings.append(
                f"invalid: {names}; {counted(hidden, 'index build')} by other roles in progress, "
                f"hidden from {self.session.target.user}: these may be them"
            )
        else:
            self.problems.append(f"invalid: {names}")
        for index in left:
            self.evidence.append(f"invalid: {index.name} ({index.describe()})")
        self.remedies.append(
            "drop and recreate each invalid index (DROP INDEX CONCURRENTLY, then CREATE INDEX "
            "CONCURRENTLY), or REINDEX INDEX CONCURRENTLY"
        )
        return len(left)

    # -- foreign keys ------------------------------------------------------------------

    async def _foreign_keys(self, schema_oid: int, found: list[_Index]) -> int:
        unindexed = 0
        for name, table, referenced, table_oid, conkey, columns in await self.session.fetch(
            _FOREIGN_KEYS, (schema_oid,)
        ):
            wanted = set(conkey)
            covered = any(
                index.table_oid == table_oid
                and index.valid
                and index.predicate is None
                and set(index.attnums[: len(wanted)]) == wanted
                for index in found
            )
            if covered:
                continue
            unindexed += 1
            self.evidence.append(
                f"foreign key {name}: {table} ({', '.join(columns)}) → {referenced} has no "
                "index on its leading columns"
            )
            self.remedies.append(
                f"CREATE INDEX CONCURRENTLY ON {self.p.schema_name}.{table} ({', '.join(columns)})"
            )
        if unindexed:
            self.warnings.append(f"{counted(unindexed, 'foreign key')} without an index")
        return unindexed


def _same_text(written: str, printed: str) -> bool:
    """Whether two spellings of a column or predicate are equal without asking PostgreSQL:
    names compare as identifiers (unquoted ones fold to lower case), and other text
    ignoring case, white space and outer parentheses."""
    return _fold(written) == _fold(printed)


def _fold(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    quoted = _QUOTED_NAME.match(text)
    if quoted:
        return quoted.group(1).replace('""', '"')
    if _SIMPLE_NAME.match(text):
        return text.lower()
    # Case and spaces do not matter outside quotes; inside them ('Active', "Name") they do.
    parts = _QUOTES.split(text)
    return "".join(
        part if index % 2 else re.sub(r"\s+", "", part).lower() for index, part in enumerate(parts)
    )


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _describe(
    unique: bool | None,
    method: str | None,
    table: str,
    columns: tuple[str, ...],
    predicate: str | None,
) -> str:
    text = ("UNIQUE " if unique else "") + (f"{method} " if method else "")
    text += f"index on {table} ({', '.join(columns)})"
    return text + (f" WHERE {predicate}" if predicate else "")


def _create_statement(schema: str, spec: IndexSpec) -> str:
    text = "CREATE UNIQUE INDEX" if spec.unique else "CREATE INDEX"
    text += " CONCURRENTLY" + (f" {spec.name}" if spec.name else "")
    text += f" ON {schema}.{spec.table}" + (f" USING {spec.method}" if spec.method else "")
    text += f" ({', '.join(spec.columns)})"
    return text + (f" WHERE {spec.where}" if spec.where else "")
