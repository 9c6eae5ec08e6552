"""readycheck's own migration rules: where squawk has none, or where the live database
changes the answer (the column's current type, a validated NOT NULL check, whether a
default's function is volatile, the server's version, who holds a lock now).

Each rule reads a parsed statement and the catalog, and yields a :class:`Finding`: the
table, the lock, what the lock costs (:class:`Effect`), the problem and the safer form.
How bad a finding is at the tables' current sizes is decided by verdict.py, not here.
Statements on a table created earlier in the same upgrade are safe (it is empty and no
one uses it yet) and yield nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from readycheck.checks.alembic.statements import (
    Lock,
    Statement,
    Table,
    subcommand,
    table_of,
)

if TYPE_CHECKING:
    from readycheck.checks.alembic.catalog import Catalog, Holder


class Effect(Enum):
    """How long a finding's lock lasts, or what else it costs."""

    BRIEF = "brief"
    """A catalog change: an instant, once granted (but it queues behind open transactions)."""
    SCAN = "scan"
    """Reads the whole table while it holds the lock."""
    REWRITE = "rewrite"
    """Rewrites the table and rebuilds its indexes while it holds the lock."""
    ROWS = "rows"
    """Changes rows inside the migration's transaction."""
    FAILS = "fails"
    """The statement will fail."""
    QUESTION = "question"
    """Safe for the database; a question about the application still running."""
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Finding:
    rule: str
    revision: str
    problem: str
    effect: Effect
    statement: Statement | None = None
    table: Table | None = None
    lock: Lock | None = None
    safer: str | None = None
    source: str = "readycheck"
    """Which linter found it: readycheck, squawk or the trace."""


SAFER = {
    "index-not-concurrent": "CREATE INDEX CONCURRENTLY outside a transaction: "
    "`with op.get_context().autocommit_block(): op.create_index(..., "
    "postgresql_concurrently=True)`",
    "concurrently-in-transaction": "run it outside the migration's transaction: "
    "`with op.get_context().autocommit_block():`",
    "add-column-not-null": "add it nullable (or with a constant server_default), backfill "
    "in batches, then SET NOT NULL behind a validated CHECK (col IS NOT NULL)",
    "add-column-rewrite": "add the column without a default (or with a constant one), then "
    "set the default and backfill existing rows in batches",
    "alter-column-type-rewrite": "add a column of the new type, backfill it in batches and "
    "switch over (widening varchar(n) or numeric(p,s), or varchar to text, is done in place)",
    "constraint-not-valid": "add it NOT VALID (`postgresql_not_valid=True`), then `ALTER "
    "TABLE … VALIDATE CONSTRAINT …` in a later transaction: reads and writes go on meanwhile",
    "constraint-builds-index": "CREATE UNIQUE INDEX CONCURRENTLY first (in an "
    "autocommit_block), then `ALTER TABLE … ADD CONSTRAINT … USING INDEX …`",
    "set-not-null-scan": "first `ADD CONSTRAINT … CHECK (col IS NOT NULL) NOT VALID` and "
    "`VALIDATE CONSTRAINT` it; SET NOT NULL then skips the scan (PostgreSQL 12+)",
    "drop-or-rename": "ship code that no longer uses it first, and drop or rename it in a "
    "later release",
    "lock-timeout-missing": "`op.execute(\"SET lock_timeout = '5s'\")` before it (or once in "
    "env.py) and retry the migration when it times out",
    "several-access-exclusive": "one table per transaction: a revision per table, with "
    "transaction_per_migration=True in env.py",
    "data-migration": "backfill in batches outside the migration's transaction (a script or "
    "a job), committing each batch",
    "waits-for-session": "deploy once that transaction has ended (or end it), with a "
    "lock_timeout so the migration gives up rather than blocks",
}

# Functions whose result differs per row, for when the database cannot say (the function
# is created by a pending revision, or in a schema we cannot see).
_VOLATILE = {"random", "clock_timestamp", "gen_random_uuid", "uuid_generate_v4", "nextval"}
_SERIAL = {"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"}
# Types whose typmod PostgreSQL widens in place (a length, a precision).
_WIDENS_IN_PLACE = {"varchar", "varbit", "numeric", "time", "timetz", "timestamp"}
_WIDENS_IN_PLACE |= {"timestamptz", "interval"}
_BINARY_COERCIBLE = {("varchar", "text"), ("text", "varchar"), ("cidr", "inet")}


def questions(statements: Iterable[Statement]) -> tuple[set[tuple[Table, str]], set[str]]:
    """What the rules will ask the catalog: the columns whose type a statement changes,
    and the functions named in the defaults of added columns."""
    from pglast import ast

    columns: set[tuple[Table, str]] = set()
    functions: set[str] = set()
    for statement in statements:
        node = statement.node
        if not isinstance(node, ast.AlterTableStmt):
            continue
        for cmd in node.cmds or ():
            name = subcommand(cmd)
            if name == "AT_AlterColumnType" and cmd.name:
                columns.add((table_of(node.relation), cmd.name))
            elif name == "AT_AddColumn" and isinstance(cmd.def_, ast.ColumnDef):
                for constraint in cmd.def_.constraints or ():
                    if constraint.raw_expr is not None:
                        functions.update(_calls(constraint.raw_expr))
    return columns, functions


def _calls(expression: Any) -> list[str]:
    """The names of the functions an expression calls."""
    from pglast.visitors import Visitor

    names: list[str] = []

    class Calls(Visitor):
        def visit_FuncCall(self, ancestors: Any, node: Any) -> None:
            names.append(node.funcname[-1].sval)

    Calls()(expression)
    return names


def lint(
    statements: Iterable[Statement],
    catalog: Catalog,
    *,
    assume_lock_timeout: bool = False,
    long_transaction_s: float = 10.0,
) -> list[Finding]:
    """Every finding of readycheck's rules, in statement order."""
    walk = _Walk(catalog, assume_lock_timeout, long_transaction_s)
    findings: list[Finding] = []
    for statement in statements:
        findings.extend(walk.statement(statement))
    return findings


class _Walk:
    """State carried from one statement to the next."""

    def __init__(self, catalog: Catalog, assume_lock_timeout: bool, long_s: float) -> None:
        self.catalog = catalog
        self.assume_lock_timeout = assume_lock_timeout
        self.long_s = long_s
        self.created: set[Table] = set()
        self.held: dict[int, dict[Table, Lock]] = {}
        """Per transaction, the strongest lock it holds on each existing table."""
        self.not_null_checks = set(catalog.not_null_checks)
        self.unvalidated: dict[str, tuple[Table, str]] = {}

    def existing(self, table: Table) -> bool:
        return table not in self.created

    def statement(self, statement: Statement) -> Iterator[Finding]:
        from pglast import ast

        node = statement.node
        if node is None:
            yield Finding(
                "unparsed",
                statement.revision,
                f"PostgreSQL's parser refused it ({statement.parse_error}): it cannot be checked",
                Effect.UNKNOWN,
                statement=statement,
            )
            return
        if isinstance(node, ast.CreateStmt):
            self.created.add(table_of(node.relation))
        elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
            self.created.add(table_of(node.into.rel))
        elif isinstance(node, ast.IndexStmt):
            yield from self._index(statement, node)
        elif isinstance(node, ast.AlterTableStmt):
            yield from self._alter_table(statement, node)
        elif isinstance(node, ast.RenameStmt):
            yield from self._rename(statement, node)
        elif isinstance(node, ast.DropStmt):
            yield from self._drop(statement)
        elif isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
            table = table_of(node.relation)
            if self.existing(table):
                verb = "updates" if isinstance(node, ast.UpdateStmt) else "deletes"
                yield self._finding(
                    "data-migration",
                    statement,
                    table,
                    Lock.ROW_EXCLUSIVE,
                    Effect.ROWS,
                    f"{verb} rows of {table} inside the migration's transaction: every row "
                    "it touches stays locked until COMMIT",
                )
        yield from self._locking(statement)

    # -- statement kinds -------------------------------------------------------------------

    def _index(self, statement: Statement, node: Any) -> Iterator[Finding]:
        table = table_of(node.relation)
        if node.concurrent and statement.transaction is not None:
            yield self._finding(
                "concurrently-in-transaction",
                statement,
                table,
                Lock.SHARE_UPDATE_EXCLUSIVE,
                Effect.FAILS,
                "CREATE INDEX CONCURRENTLY cannot run inside a transaction block: the "
                "migration will fail here",
            )
        elif not node.concurrent and self.existing(table):
            yield self._finding(
                "index-not-concurrent",
                statement,
                table,
                Lock.SHARE,
                Effect.SCAN,
                f"CREATE INDEX without CONCURRENTLY: writes to {table} wait while the index builds",
            )

    def _alter_table(self, statement: Statement, node: Any) -> Iterator[Finding]:
        from pglast import ast
        from pglast.enums import ConstrType

        table = table_of(node.relation)
        if not self.existing(table):
            return
        for cmd in node.cmds or ():
            name = subcommand(cmd)
            definition = cmd.def_
            if name == "AT_AddColumn" and isinstance(definition, ast.ColumnDef):
                yield from self._add_column(statement, table, definition)
            elif name == "AT_AlterColumnType" and isinstance(definition, ast.ColumnDef):
                yield from self._alter_type(statement, table, cmd.name, definition)
            elif name == "AT_SetNotNull":
                if (table, cmd.name) not in self.not_null_checks or (
                    self.catalog.server_version and self.catalog.server_version < 120000
                ):
                    yield self._finding(
                        "set-not-null-scan",
                        statement,
                        table,
                        Lock.ACCESS_EXCLUSIVE,
                        Effect.SCAN,
                        f"SET NOT NULL on {table}.{cmd.name} reads the whole table under "
                        "ACCESS EXCLUSIVE (no validated CHECK (… IS NOT NULL) to rely on)",
                    )
            elif name == "AT_AddConstraint" and isinstance(definition, ast.Constraint):
                yield from self._add_constraint(statement, table, definition)
            elif name == "AT_ValidateConstraint" and cmd.name in self.unvalidated:
                self.not_null_checks.add(self.unvalidated.pop(cmd.name))
            elif name == "AT_DropColumn":
                yield self._question(
                    statement, table, f"drops column {table}.{cmd.name}", "read or write it"
                )
            if (
                name == "AT_AddConstraint"
                and isinstance(definition, ast.Constraint)
                and definition.contype == ConstrType.CONSTR_CHECK
            ):
                self._note_not_null_check(table, definition)

    def _add_column(self, statement: Statement, table: Table, column: Any) -> Iterator[Finding]:
        from pglast.enums import ConstrType

        constraints = list(column.constraints or ())
        kinds = {c.contype for c in constraints}
        default = next(
            (c.raw_expr for c in constraints if c.contype == ConstrType.CONSTR_DEFAULT), None
        )
        type_name = column.typeName.names[-1].sval if column.typeName else ""
        stored = ConstrType.CONSTR_GENERATED in kinds
        filled = (
            type_name in _SERIAL
            or ConstrType.CONSTR_IDENTITY in kinds
            or stored
            or (default is not None and self._volatile(default))
            or (
                default is not None
                and self.catalog.server_version
                and self.catalog.server_version < 110000
            )
        )
        if filled:
            why = (
                "a serial or identity column"
                if type_name in _SERIAL or ConstrType.CONSTR_IDENTITY in kinds
                else "a stored generated column"
                if stored
                else "a default before PostgreSQL 11"
                if self.catalog.server_version and self.catalog.server_version < 110000
                else "a volatile default"
            )
            yield self._finding(
                "add-column-rewrite",
                statement,
                table,
                Lock.ACCESS_EXCLUSIVE,
                Effect.REWRITE,
                f"adds {table}.{column.colname} with {why}: every row is rewritten under "
                "ACCESS EXCLUSIVE",
            )
        elif ConstrType.CONSTR_NOTNULL in kinds and default is None:
            yield self._finding(
                "add-column-not-null",
                statement,
                table,
                Lock.ACCESS_EXCLUSIVE,
                Effect.FAILS,
                f"adds {table}.{column.colname} NOT NULL without a default: fails if "
                f"{table} has any row",
            )

    def _volatile(self, expression: Any) -> bool:
        return any(
            self.catalog.volatile.get(name, name in _VOLATILE) for name in _calls(expression)
        )

    def _alter_type(
        self, statement: Statement, table: Table, column: str, definition: Any
    ) -> Iterator[Finding]:
        current = self.catalog.column_types.get((table, column))
        new_name = definition.typeName.names[-1].sval
        new_mods = [getattr(mod.val, "ival", None) for mod in definition.typeName.typmods or ()]
        if (
            definition.raw_default is None
            and current is not None
            and in_place(current.name, current.typmod, new_name, new_mods)
        ):
            return
        was = f" from {current.formatted}" if current is not None else ""
        using = " with USING" if definition.raw_default is not None else ""
        yield self._finding(
            "alter-column-type-rewrite",
            statement,
            table,
            Lock.ACCESS_EXCLUSIVE,
            Effect.REWRITE,
            f"changes the type of {table}.{column}{was}{using}: PostgreSQL rewrites the "
            "table and rebuilds its indexes under ACCESS EXCLUSIVE",
        )

    def _add_constraint(
        self, statement: Statement, table: Table, constraint: Any
    ) -> Iterator[Finding]:
        from pglast.enums import ConstrType

        kind = constraint.contype
        named = f" {constraint.conname}" if constraint.conname else ""
        if kind == ConstrType.CONSTR_FOREIGN and not constraint.skip_validation:
            referenced = table_of(constraint.pktable)
            yield self._finding(
                "constraint-not-valid",
                statement,
                table,
                Lock.SHARE_ROW_EXCLUSIVE,
                Effect.SCAN,
                f"adds foreign key{named} without NOT VALID: writes to {table} and "
                f"{referenced} wait while every row is checked",
            )
        elif kind == ConstrType.CONSTR_CHECK and not constraint.skip_validation:
            yield self._finding(
                "constraint-not-valid",
                statement,
                table,
                Lock.ACCESS_EXCLUSIVE,
                Effect.SCAN,
                f"adds check constraint{named} without NOT VALID: {table} is read in full "
                "under ACCESS EXCLUSIVE",
            )
        elif kind in _builds_index() and not constraint.indexname:
            yield self._finding(
                "constraint-builds-index",
                statement,
                table,
                Lock.ACCESS_EXCLUSIVE,
                Effect.SCAN,
                f"adds a {'primary key' if kind == ConstrType.CONSTR_PRIMARY else 'unique'} "
                f"constraint{named}: its index is built under ACCESS EXCLUSIVE",
            )

    def _note_not_null_check(self, table: Table, constraint: Any) -> None:
        from pglast import ast
        from pglast.enums import NullTestType

        test = constraint.raw_expr
        if not (isinstance(test, ast.NullTest) and test.nulltesttype == NullTestType.IS_NOT_NULL):
            return
        fields = test.arg.fields if isinstance(test.arg, ast.ColumnRef) else None
        if not fields or len(fields) != 1:
            return
        column = (table, fields[0].sval)
        if constraint.skip_validation and constraint.conname:
            self.unvalidated[constraint.conname] = column
        elif not constraint.skip_validation:
            self.not_null_checks.add(column)

    def _rename(self, statement: Statement, node: Any) -> Iterator[Finding]:
        from pglast.enums import ObjectType

        if node.relation is None:
            return
        table = table_of(node.relation)
        if not self.existing(table):
            return
        if node.renameType == ObjectType.OBJECT_TABLE:
            what = f"renames table {table} to {node.newname}"
        elif node.renameType == ObjectType.OBJECT_COLUMN:
            what = f"renames column {table}.{node.subname} to {node.newname}"
        else:
            return
        yield self._question(statement, table, what, "use the old name")

    def _drop(self, statement: Statement) -> Iterator[Finding]:
        for entry in statement.locks:
            if entry.lock is Lock.ACCESS_EXCLUSIVE and self.existing(entry.table):
                yield self._question(statement, entry.table, f"drops table {entry.table}", "use it")

    # -- every statement that locks --------------------------------------------------------

    def _locking(self, statement: Statement) -> Iterator[Finding]:
        """Rules about taking a lock, for each lock the transaction does not hold yet."""
        held = self.held.setdefault(statement.transaction, {}) if statement.transaction else {}
        for entry in statement.locks:
            table = entry.table
            if not self.existing(table) or held.get(table, Lock.ACCESS_SHARE) >= entry.lock:
                continue
            exclusive = [t for t, lock in held.items() if lock is Lock.ACCESS_EXCLUSIVE]
            if statement.transaction is not None:
                held[table] = entry.lock
            blockers = self._long_holders(table, entry.lock)
            if blockers:
                holder = blockers[0]
                more = f" (and {len(blockers) - 1} more)" if len(blockers) > 1 else ""
                yield self._finding(
                    "waits-for-session",
                    statement,
                    table,
                    entry.lock,
                    Effect.BRIEF,
                    f"needs {entry.lock.label} on {table}, which {describe(holder)} holds "
                    f"as {holder.mode}{more}: the migration would wait behind it, and every "
                    f"query on {table} behind the migration",
                )
            blocks = entry.lock.blocks
            if blocks and not statement.lock_timeout and not self.assume_lock_timeout:
                waits = (
                    "any open transaction on"
                    if entry.lock is Lock.ACCESS_EXCLUSIVE
                    else ("any open transaction writing to")
                )
                yield self._finding(
                    "lock-timeout-missing",
                    statement,
                    table,
                    entry.lock,
                    Effect.BRIEF,
                    f"takes {entry.lock.label} on {table} with no lock_timeout set: it waits "
                    f"behind {waits} {table}, and {blocks} on {table} queue behind it "
                    "meanwhile",
                )
            if entry.lock is Lock.ACCESS_EXCLUSIVE and exclusive:
                yield self._finding(
                    "several-access-exclusive",
                    statement,
                    table,
                    entry.lock,
                    Effect.BRIEF,
                    f"takes ACCESS EXCLUSIVE on {table} while the same transaction already "
                    f"holds it on {', '.join(map(str, exclusive))}: all stay locked until "
                    "COMMIT",
                )

    def _long_holders(self, table: Table, lock: Lock) -> list[Holder]:
        facts = self.catalog.facts(table)
        if facts is None:
            return []
        return [
            holder
            for holder in facts.holders
            if holder.age_s is not None
            and holder.age_s >= self.long_s
            and (mode := Lock.of_pg_mode(holder.mode)) is not None
            and lock.conflicts_with(mode)
        ]

    def _question(self, statement: Statement, table: Table, what: str, use: str) -> Finding:
        return self._finding(
            "drop-or-rename",
            statement,
            table,
            Lock.ACCESS_EXCLUSIVE,
            Effect.QUESTION,
            f"{what}: does the release running now still {use}?",
        )

    def _finding(
        self,
        rule: str,
        statement: Statement,
        table: Table,
        lock: Lock,
        effect: Effect,
        problem: str,
    ) -> Finding:
        return Finding(
            rule,
            statement.revision,
            problem,
            effect,
            statement=statement,
            table=table,
            lock=lock,
            safer=SAFER.get(rule),
        )


def describe(holder: Holder) -> str:
    """``pid 4242 (app api, idle in transaction, open 12 min)``."""
    from readycheck.units import format_duration_ms

    parts = []
    if holder.application:
        parts.append(f"application {holder.application}")
    if holder.state:
        parts.append(holder.state)
    if holder.age_s is not None:
        parts.append(f"transaction open {format_duration_ms(holder.age_s * 1000)}")
    return f"pid {holder.pid}" + (f" ({', '.join(parts)})" if parts else "")


def _builds_index() -> set[int]:
    from pglast.enums import ConstrType

    return {ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_EXCLUSION}


def in_place(old: str, old_mod: int, new: str, new_mods: list[int | None]) -> bool:
    """Whether PostgreSQL changes a column from type ``old`` (with typmod ``old_mod``) to
    ``new`` (with modifiers ``new_mods``) without rewriting the table."""
    if (old, new) in _BINARY_COERCIBLE:
        return not new_mods
    if old != new or old not in _WIDENS_IN_PLACE:
        return False
    if not new_mods:
        return True  # the limit is lifted: nothing to check
    if old_mod < 0:
        return False  # unconstrained to constrained: every value is checked
    if any(mod is None for mod in new_mods):
        return False
    mods = [int(mod) for mod in new_mods if mod is not None]
    if old == "numeric":
        precision, scale = ((old_mod - 4) >> 16) & 0xFFFF, (old_mod - 4) & 0xFFFF
        new_scale = mods[1] if len(mods) > 1 else 0
        return new_scale == scale and mods[0] >= precision
    if old in ("varchar", "varbit"):
        return mods[0] >= (old_mod - 4 if old == "varchar" else old_mod)
    return mods[0] >= old_mod
