"""postgres.query: a read-only SQL assertion ("no degraded webhooks", "every tenant has a plan").

The statement is checked when the profile loads (statement.py: parsed, never pattern-matched)
and runs in the check's safe session: read-only, with its statement timeout. A SELECT runs
as a server-side cursor, and only the rows the expectation needs cross the network: the
rows shown as evidence (or compared with ``equals``), then a ``MOVE`` that counts further
rows on the server without sending them, up to what the ``rows`` bound needs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from readycheck.checks.postgres import PostgresParams
from readycheck.checks.postgres.session import with_session
from readycheck.checks.postgres.statement import ReadOnlyStatement, read_only_statement
from readycheck.redact import MASK, looks_secret
from readycheck.registry import check
from readycheck.results import Outcome
from readycheck.units import counted

if TYPE_CHECKING:
    from readycheck.checks.postgres.session import Row, Session
    from readycheck.context import Context

Scalar: TypeAlias = datetime | date | bool | int | float | str | None
Comparator = Literal["<", "<=", ">", ">=", "=", "==", "!="]

# Rows are counted (on the server, none sent) up to this many when `rows` is expected.
ROW_COUNT_CAP = 10_000
MAX_EQUALS_ROWS = 1000
_VALUE_WIDTH = 60
_SQL_WIDTH = 160
_MISMATCHES_SHOWN = 10
_CURSOR = "readycheck_query"


class RowRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min: int | None = Field(None, ge=0, description="Fewest rows accepted.")
    max: int | None = Field(None, ge=0, description="Most rows accepted.")

    @model_validator(mode="after")
    def _a_bound(self) -> RowRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max})")
        return self


class QueryParams(PostgresParams):
    sql: str = Field(
        description="One statement that only reads: SELECT, WITH … SELECT, VALUES, TABLE, "
        "SHOW or EXPLAIN. Checked by PostgreSQL's parser (pglast, `readycheck[sql]`) when "
        "the profile loads; a function that writes is refused by the read-only session.",
    )
    params: list[Scalar] = Field(
        default_factory=list,
        description="Values bound to `$1`, `$2`, … in `sql` (never formatted into its text).",
    )
    rows: int | RowRange | None = Field(
        None,
        description="Expected number of rows: an exact count (`0`: the query must find "
        "nothing) or `{min, max}`.",
    )
    value: dict[Comparator, Scalar] | None = Field(
        None,
        description='Comparisons of the first column of the first row, e.g. `{"<": 100}` or '
        '`{">=": 1, "<=": 10}`; operators <, <=, >, >=, = (==), !=.',
    )
    equals: list[list[Scalar] | Scalar] | None = Field(
        None,
        max_length=MAX_EQUALS_ROWS,
        description="The exact rows expected, each a list of column values (a single "
        "value for a one-column row).",
    )
    ordered: bool = Field(
        False,
        description="Compare `equals` row by row in order (give the statement an ORDER BY); "
        "by default the order of rows is ignored.",
    )
    evidence_rows: int = Field(
        5, ge=0, le=50, description="How many of the returned rows to show as evidence."
    )

    @field_validator("sql")
    @classmethod
    def _read_only(cls, text: str) -> str:
        read_only_statement(text)
        return text

    @model_validator(mode="after")
    def _expectation_and_params(self) -> QueryParams:
        if self.rows is None and self.value is None and self.equals is None:
            raise ValueError("give an expectation: rows, value or equals")
        if self.value is not None and not self.value:
            raise ValueError("value needs at least one comparison, e.g. {'<': 100}")
        wanted = self.statement.parameter_count
        if wanted != len(self.params):
            raise ValueError(
                f"the statement uses {counted(wanted, 'parameter')} ($1 … ${wanted}) and params "
                f"gives {counted(len(self.params), 'value')}"
                if wanted
                else f"params gives {counted(len(self.params), 'value')} but the statement has "
                "no $1"
            )
        return self

    @property
    def statement(self) -> ReadOnlyStatement:
        return read_only_statement(self.sql)

    @property
    def row_bounds(self) -> tuple[int, int | None] | None:
        if self.rows is None:
            return None
        if isinstance(self.rows, int):
            return self.rows, self.rows
        return self.rows.min or 0, self.rows.max


@check("postgres.query", params=QueryParams, category="database")
async def query(p: QueryParams, ctx: Context) -> Outcome:
    """Run one read-only SQL statement and compare its rows or value with an expectation."""
    return await with_session(p, ctx, lambda session: _evaluate(p, session))


@dataclass(frozen=True)
class Fetched:
    columns: list[str]
    rows: list[Row]
    count: int
    """Rows returned, as far as counted."""
    complete: bool
    """Whether ``count`` is every row (else there are at least that many)."""

    @property
    def counted(self) -> str:
        rows = "row" if self.count == 1 else "rows"
        return f"{self.count:,} {rows}" if self.complete else f"at least {self.count:,} {rows}"


async def _evaluate(p: QueryParams, session: Session) -> Outcome:
    from psycopg import errors

    statement = p.statement
    try:
        fetched = await _fetch(p, statement, session)
    except errors.ReadOnlySqlTransaction as exc:
        said = (exc.diag.message_primary or "a write").strip()
        return Outcome.errored(
            f"the statement tried to write and the read-only session refused it ({said})",
            evidence=[f"SQL: {_shorten(statement.text, _SQL_WIDTH)}"],
            remediation="postgres.query only reads: a function the statement calls writes "
            "(or takes a lock a read-only transaction may not). Assert on a statement that "
            "only reads, such as a view.",
        )
    shown = _Shown(fetched.columns)
    evidence = [
        f"SQL: {_shorten(statement.text, _SQL_WIDTH)}",
        f"{fetched.counted} returned"
        + (f" (columns: {', '.join(fetched.columns)})" if fetched.columns else ""),
    ]
    evidence += [
        f"row {number}: {shown.row(row)}"
        for number, row in enumerate(fetched.rows[: p.evidence_rows], start=1)
    ]
    hidden = fetched.count - min(len(fetched.rows), p.evidence_rows)
    if hidden > 0 and p.evidence_rows:
        evidence.append(f"… {'' if fetched.complete else 'at least '}{hidden:,} more not shown")

    comparisons: list[tuple[bool, str]] = []
    bounds = p.row_bounds
    if bounds is not None:
        comparisons.append(_compare_count(fetched, *bounds))
    metrics: dict[str, float] = {"rows": float(fetched.count)}
    if p.value is not None:
        found = _compare_value(p.value, fetched, shown)
        if isinstance(found, Outcome):
            return found
        comparisons.extend(found)
        first = _number(fetched.rows[0][0]) if fetched.rows and fetched.rows[0] else None
        if first is not None:
            metrics["value"] = float(first)
    if p.equals is not None:
        comparisons.extend(_compare_rows(p.equals, p.ordered, fetched, shown))

    evidence += [f"{'✓' if held else '✗'} {text}" for held, text in comparisons]
    failed = [text for held, text in comparisons if not held]
    if failed:
        return Outcome.failed(
            "; ".join(failed[:3]) + ("; …" if len(failed) > 3 else ""),
            evidence=evidence,
            metrics=metrics,
        )
    return Outcome.passed(
        "; ".join(text for _, text in comparisons), evidence=evidence, metrics=metrics
    )


async def _fetch(p: QueryParams, statement: ReadOnlyStatement, session: Session) -> Fetched:
    from psycopg import sql

    text, arguments = statement.bound(list(p.params))
    needed = max(1, p.evidence_rows, len(p.equals or []) + 1)
    bounds = p.row_bounds
    # Count past the rows fetched only when the row count is what the expectation is
    # about, and no further than the answer (and a readable figure) needs.
    count_to = needed
    if bounds is not None:
        low, high = bounds
        count_to = max(needed, ROW_COUNT_CAP, high + 1 if high is not None else low)
    connection = session.connection
    async with session.transaction():
        if statement.declarable:
            cursor = connection.cursor(name=_CURSOR)
            try:
                await cursor.execute(text, arguments)
                rows = await cursor.fetchmany(needed)
                columns = [column.name for column in cursor.description or []]
                count, complete = len(rows), len(rows) < needed
                if not complete and count_to > count:
                    moved = await connection.execute(
                        sql.SQL("MOVE FORWARD {} IN {}").format(
                            sql.Literal(count_to - count), sql.Identifier(_CURSOR)
                        )
                    )
                    count += max(0, moved.rowcount)
                    complete = count < count_to
            finally:
                await cursor.close()
        else:
            # SHOW and EXPLAIN cannot be declared as a cursor; their output is small.
            plain = await connection.execute(text, arguments)
            columns = [column.name for column in plain.description or []]
            rows = await plain.fetchmany(needed)
            count, complete = max(plain.rowcount, len(rows)), True
    return Fetched(columns, rows, count, complete)


# -- comparisons --------------------------------------------------------------------------


def _compare_count(fetched: Fetched, low: int, high: int | None) -> tuple[bool, str]:
    # Counting stops past `high`, so an incomplete count is already over it.
    held = low <= fetched.count and (high is None or fetched.count <= high)
    if high == low:
        expected = f"expected {low:,}"
    elif high is None:
        expected = f"expected at least {low:,}"
    elif low == 0:
        expected = f"expected at most {high:,}"
    else:
        expected = f"expected {low:,} to {high:,}"
    return held, f"{fetched.counted} ({expected})"


_OPERATORS: dict[str, str] = {
    "=": "=",
    "==": "=",
    "!=": "≠",
    "<": "<",
    "<=": "≤",
    ">": ">",
    ">=": "≥",
}


def _compare_value(
    wanted: dict[Comparator, Scalar], fetched: Fetched, shown: _Shown
) -> list[tuple[bool, str]] | Outcome:
    name = fetched.columns[0] if fetched.columns else "value"
    if not fetched.rows:
        return [(False, f"{name}: the statement returned no row, so no value to compare")]
    actual = fetched.rows[0][0] if fetched.rows[0] else None
    display = shown.value(0, actual)
    results: list[tuple[bool, str]] = []
    for operator, expected in wanted.items():
        symbol = _OPERATORS[operator]
        text = f"{name}: {display} {symbol} {_literal(expected)}"
        if actual is None and expected is not None:
            results.append((False, f"{name} is NULL, expected {symbol} {_literal(expected)}"))
            continue
        if symbol in ("=", "≠"):
            same = _same(actual, expected)
            results.append((same if symbol == "=" else not same, text))
            continue
        order = _order(actual, expected)
        if order is None:
            return Outcome.errored(
                f"{name} is {display}, which cannot be compared ({symbol}) with "
                f"{_literal(expected)}",
                evidence=[text],
                remediation="Compare numbers with numbers and text with text: cast in the "
                "statement (count(*)::int, extract(epoch FROM …)) or change the expected value.",
            )
        held = {"<": order < 0, "≤": order <= 0, ">": order > 0, "≥": order >= 0}[symbol]
        results.append((held, text))
    return results


def _compare_rows(
    expected_rows: Sequence[list[Scalar] | Scalar], ordered: bool, fetched: Fetched, shown: _Shown
) -> list[tuple[bool, str]]:
    expected = [row if isinstance(row, list) else [row] for row in expected_rows]
    actual = list(fetched.rows)
    problems: list[str] = []
    if ordered:
        for number, (want, got) in enumerate(zip(expected, actual, strict=False), start=1):
            if not _row_matches(got, want):
                problems.append(
                    f"row {number}: expected {_literal_row(want)}, got {shown.row(got)}"
                )
        problems += [f"missing row {_literal_row(want)}" for want in expected[len(actual) :]]
        problems += [f"unexpected row {shown.row(got)}" for got in actual[len(expected) :]]
    else:
        unmatched = list(actual)
        for want in expected:
            match = next((got for got in unmatched if _row_matches(got, want)), None)
            if match is None:
                problems.append(f"missing row {_literal_row(want)}")
            else:
                unmatched.remove(match)
        problems += [f"unexpected row {shown.row(got)}" for got in unmatched]
    order = "in order" if ordered else "in any order"
    if not problems:
        return [(True, f"the {counted(len(expected), 'expected row')} returned, {order}")]
    results = [(False, f"{fetched.counted} returned, not the {len(expected)} expected ({order})")]
    results += [(False, problem) for problem in problems[:_MISMATCHES_SHOWN]]
    if len(problems) > _MISMATCHES_SHOWN:
        results.append((False, f"… {len(problems) - _MISMATCHES_SHOWN} more differences"))
    return results


def _row_matches(actual: Row, expected: list[Scalar]) -> bool:
    return len(actual) == len(expected) and all(map(_same, actual, expected))


def _same(actual: Any, expected: Scalar) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, bool) and actual is expected
    if isinstance(expected, int | float):
        number = _number(actual)
        return number is not None and number == _number(expected)
    if isinstance(expected, date) and isinstance(actual, date):
        try:
            return bool(actual == expected)
        except TypeError:
            return False
    return _text(actual) == str(expected)


def _order(actual: Any, expected: Scalar) -> int | None:
    """-1, 0 or 1 as ``actual`` is below, at or above ``expected``; None if incomparable."""
    if isinstance(actual, bool) or isinstance(expected, bool) or expected is None:
        return None
    pair: tuple[Any, Any] | None = None
    if isinstance(expected, int | float):
        left, right = _number(actual), _number(expected)
        pair = (left, right) if left is not None and right is not None else None
    elif isinstance(expected, str | date) and isinstance(actual, type(expected)):
        pair = (actual, expected)
    if pair is None:
        return None
    try:
        return int(pair[0] > pair[1]) - int(pair[0] < pair[1])
    except TypeError:  # a naive and an aware datetime
        return None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None


# -- showing values -----------------------------------------------------------------------


class _Shown:
    """Values as evidence shows them: shortened, and masked in columns named like secrets
    (the rule environment variables and headers follow); the engine's redactor then masks
    any known secret value."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.secret = [looks_secret(name) for name in columns]

    def value(self, index: int, value: Any) -> str:
        if index < len(self.secret) and self.secret[index] and value is not None:
            return MASK
        return _literal(value)

    def row(self, row: Row) -> str:
        cells = [
            f"{self.columns[index]}={self.value(index, value)}"
            if index < len(self.columns)
            else self.value(index, value)
            for index, value in enumerate(row)
        ]
        return _shorten(", ".join(cells), 300)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + _shorten(value, _VALUE_WIDTH) + "'"
    return _shorten(_text(value), _VALUE_WIDTH)


def _literal_row(values: list[Scalar]) -> str:
    return "(" + ", ".join(_literal(value) for value in values) + ")"


def _text(value: Any) -> str:
    """A value's plain text form: what a string in the profile is compared with."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value[:_VALUE_WIDTH]).hex()
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, separators=(", ", ": "))
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return str(value)


def _shorten(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
