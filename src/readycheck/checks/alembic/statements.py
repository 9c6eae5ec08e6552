"""Each rendered statement, parsed by the real PostgreSQL parser (pglast, libpg_query's
Python binding): what kind it is, which tables it touches, and the lock it takes there.

Lock levels follow the PostgreSQL documentation's "Explicit Locking" table and
``ALTER TABLE``'s notes (the same levels ``AlterTableGetLockLevel`` picks): ``ACCESS
EXCLUSIVE`` for most ``ALTER TABLE`` forms, ``SHARE ROW EXCLUSIVE`` for adding a foreign
key (on both tables) or a trigger, ``SHARE UPDATE EXCLUSIVE`` for ``VALIDATE
CONSTRAINT``, ``SET STATISTICS`` and the ``CONCURRENTLY`` forms, ``SHARE`` for ``CREATE
INDEX``, ``ROW EXCLUSIVE`` for ``INSERT``/``UPDATE``/``DELETE``.

Walking the statements in order also tells, for each one, the transaction block it runs
in (``BEGIN``/``COMMIT`` as Alembic writes them) and whether a ``lock_timeout`` is in
force (``SET``, ``SET LOCAL`` until the end of its transaction, ``RESET``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from readycheck.checks.alembic.render import Chunk


class Lock(IntEnum):
    """PostgreSQL's table-level lock modes, weakest first."""

    ACCESS_SHARE = 1
    ROW_SHARE = 2
    ROW_EXCLUSIVE = 3
    SHARE_UPDATE_EXCLUSIVE = 4
    SHARE = 5
    SHARE_ROW_EXCLUSIVE = 6
    EXCLUSIVE = 7
    ACCESS_EXCLUSIVE = 8

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    @property
    def pg_mode(self) -> str:
        """The name pg_locks gives it (``AccessExclusiveLock``)."""
        return "".join(part.capitalize() for part in self.name.split("_")) + "Lock"

    @classmethod
    def of_pg_mode(cls, mode: str) -> Lock | None:
        return _BY_PG_MODE.get(mode)

    def conflicts_with(self, other: Lock) -> bool:
        return other in _CONFLICTS[self]

    @property
    def blocks(self) -> str:
        """What the application cannot do while the lock is held."""
        if self is Lock.ACCESS_EXCLUSIVE:
            return "reads and writes"
        if self.conflicts_with(Lock.ROW_EXCLUSIVE):
            return "writes"
        return ""


_A, _RS, _RE, _SUE, _S, _SRE, _E, _AE = Lock
_CONFLICTS: dict[Lock, frozenset[Lock]] = {
    _A: frozenset({_AE}),
    _RS: frozenset({_E, _AE}),
    _RE: frozenset({_S, _SRE, _E, _AE}),
    _SUE: frozenset({_SUE, _S, _SRE, _E, _AE}),
    _S: frozenset({_RE, _SUE, _SRE, _E, _AE}),
    _SRE: frozenset({_RE, _SUE, _S, _SRE, _E, _AE}),
    _E: frozenset({_RS, _RE, _SUE, _S, _SRE, _E, _AE}),
    _AE: frozenset(Lock),
}
_BY_PG_MODE = {lock.pg_mode: lock for lock in Lock}


@dataclass(frozen=True)
class Table:
    """A table as the statement names it (schema only when written)."""

    name: str
    schema: str | None = None

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class TableLock:
    table: Table
    lock: Lock


@dataclass(frozen=True)
class Statement:
    """One statement of the upgrade, where it runs, and what it locks."""

    revision: str
    sql: str
    index: int
    """Its position in the whole upgrade, from 0."""
    node: Any = None
    """pglast's parse tree of it (None when it could not be parsed)."""
    parse_error: str | None = None
    transaction: int | None = None
    """The transaction block it runs in (numbered from 1); None outside any."""
    lock_timeout: bool = False
    """Whether a lock_timeout is in force when it runs."""
    locks: tuple[TableLock, ...] = field(default=())
    index_locks: tuple[TableLock, ...] = field(default=())
    """Locks it takes on the tables of indexes it names alone (DROP INDEX): the index's
    name and the lock its table gets, until :meth:`with_index_tables` resolves them."""

    @property
    def kind(self) -> str:
        if self.node is None:
            return "unparsed"
        name = type(self.node).__name__
        return _KINDS.get(name, name.removesuffix("Stmt"))

    def short(self, limit: int = 120) -> str:
        """The SQL on one line, shortened."""
        text = " ".join(self.sql.split())
        return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"

    def with_index_tables(self, tables: Mapping[Table, Table]) -> Statement:
        """This statement with the tables of the indexes it names among its locks."""
        if not self.index_locks:
            return self
        found = tuple(
            TableLock(tables[entry.table], entry.lock)
            for entry in self.index_locks
            if entry.table in tables
        )
        return replace(self, locks=self.locks + found, index_locks=())


_KINDS = {
    "IndexStmt": "CREATE INDEX",
    "AlterTableStmt": "ALTER TABLE",
    "CreateStmt": "CREATE TABLE",
    "DropStmt": "DROP",
    "RenameStmt": "RENAME",
    "InsertStmt": "INSERT",
    "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE",
    "TruncateStmt": "TRUNCATE",
    "VariableSetStmt": "SET",
    "TransactionStmt": "transaction control",
    "CreateTrigStmt": "CREATE TRIGGER",
    "ReindexStmt": "REINDEX",
    "VacuumStmt": "VACUUM",
    "LockStmt": "LOCK",
    "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW",
}


def parse(chunks: Iterable[Chunk]) -> list[Statement]:
    """Split every chunk into statements and annotate each; see the module docstring."""
    statements: list[Statement] = []
    tracker = _Tracker()
    for chunk in chunks:
        for sql, node, error in _split(chunk.sql):
            statements.append(tracker.statement(chunk.revision, sql, node, error, len(statements)))
    return statements


def _split(text: str) -> Iterator[tuple[str, Any, str | None]]:
    """(sql, parse tree, error) for each statement of ``text``."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    try:
        raws = parse_sql(text)
    except ParseError as exc:
        pieces = split_script(text)
        if len(pieces) < 2:
            yield text, None, str(exc)
            return
        # One bad statement among several: parse each on its own, so that only it is lost.
        for piece in pieces:
            yield from _split(piece)
        return
    encoded = text.encode()
    for raw in raws:
        # Offsets are in bytes of the UTF-8 text; a length of 0 means "to the end".
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(encoded)
        sql = encoded[start:end].decode(errors="replace").strip()
        yield sql, raw.stmt, None


def split_script(text: str) -> list[str]:
    """``text`` cut at its semicolons by PostgreSQL's scanner (not inside quotes or
    dollar-quoted bodies); [] when even the scanner refuses it."""
    from pglast.parser import ParseError, scan

    encoded = text.encode()
    try:
        tokens = scan(text)
    except ParseError:
        return []
    pieces, start = [], 0
    for token in tokens:
        if token.name == "ASCII_59":  # ";"
            pieces.append(encoded[start : token.end + 1].decode(errors="replace").strip())
            start = token.end + 1
    pieces.append(encoded[start:].decode(errors="replace").strip())
    return [piece for piece in pieces if piece.strip(" ;\n")]


class _Tracker:
    """The transaction and lock_timeout state while walking the statements."""

    def __init__(self) -> None:
        self.transactions = 0
        self.open: int | None = None
        self.session_timeout = False
        self.local_timeout = False

    def statement(
        self, revision: str, sql: str, node: Any, error: str | None, index: int
    ) -> Statement:
        from pglast import ast

        if isinstance(node, ast.TransactionStmt):
            self._transaction(node)
        in_force = self.session_timeout or self.local_timeout
        if isinstance(node, ast.VariableSetStmt) and (node.name or "").lower() == "lock_timeout":
            self._lock_timeout(node)
        locks, index_locks = _locks(node) if node is not None else ((), ())
        return Statement(
            revision=revision,
            sql=sql,
            index=index,
            node=node,
            parse_error=error,
            transaction=self.open,
            lock_timeout=in_force,
            locks=locks,
            index_locks=index_locks,
        )

    def _transaction(self, node: Any) -> None:
        from pglast.enums import TransactionStmtKind as Kind

        if node.kind in (Kind.TRANS_STMT_BEGIN, Kind.TRANS_STMT_START):
            self.transactions += 1
            self.open = self.transactions
        elif node.kind in (Kind.TRANS_STMT_COMMIT, Kind.TRANS_STMT_ROLLBACK):
            self.open = None
            self.local_timeout = False

    def _lock_timeout(self, node: Any) -> None:
        from pglast.enums import VariableSetKind as Kind

        setting = node.kind == Kind.VAR_SET_VALUE and not _is_zero(node.args)
        if node.is_local:
            self.local_timeout = setting and self.open is not None
        else:
            self.session_timeout = setting
            self.local_timeout = self.local_timeout and setting


def _is_zero(args: Any) -> bool:
    from pglast import ast

    for arg in args or ():
        if isinstance(arg, ast.A_Const) and arg.val is not None:
            value = getattr(arg.val, "ival", None)
            if value is None:
                value = getattr(arg.val, "sval", None)
            return str(value).strip() in ("0", "0ms", "0s", "")
    return True


def table_of(range_var: Any) -> Table:
    return Table(name=range_var.relname, schema=range_var.schemaname or None)


def _locks(node: Any) -> tuple[tuple[TableLock, ...], tuple[TableLock, ...]]:
    """The table locks a statement takes, and those it takes on the tables of indexes it
    names alone."""
    from pglast import ast
    from pglast.enums import ObjectType

    def on(range_var: Any, lock: Lock) -> tuple[tuple[TableLock, ...], tuple[TableLock, ...]]:
        return ((TableLock(table_of(range_var), lock),), ())

    if isinstance(node, ast.IndexStmt):
        return on(node.relation, Lock.SHARE_UPDATE_EXCLUSIVE if node.concurrent else Lock.SHARE)
    if isinstance(node, ast.AlterTableStmt) and node.objtype == ObjectType.OBJECT_TABLE:
        return _alter_table_locks(node), ()
    if isinstance(node, ast.CreateStmt):
        # A new table; a foreign key in it adds triggers to the table it references.
        return tuple(
            TableLock(table_of(constraint.pktable), Lock.SHARE_ROW_EXCLUSIVE)
            for constraint in _constraints_of_create(node)
            if constraint.pktable is not None
        ), ()
    if isinstance(node, ast.RenameStmt):
        if node.relation is None:
            return (), ()
        if node.renameType == ObjectType.OBJECT_INDEX:
            return (), (TableLock(table_of(node.relation), Lock.SHARE_UPDATE_EXCLUSIVE),)
        return on(node.relation, Lock.ACCESS_EXCLUSIVE)
    if isinstance(node, ast.DropStmt):
        return _drop_locks(node)
    if isinstance(node, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt):
        return on(node.relation, Lock.ROW_EXCLUSIVE)
    if isinstance(node, ast.TruncateStmt):
        relations = node.relations or ()
        return tuple(TableLock(table_of(r), Lock.ACCESS_EXCLUSIVE) for r in relations), ()
    if isinstance(node, ast.CreateTrigStmt):
        return on(node.relation, Lock.SHARE_ROW_EXCLUSIVE)
    if isinstance(node, ast.LockStmt):
        # LockStmt.mode is PostgreSQL's LOCKMODE, numbered as Lock is.
        lock = Lock(node.mode) if node.mode in set(Lock) else Lock.ACCESS_EXCLUSIVE
        return tuple(TableLock(table_of(r), lock) for r in node.relations or ()), ()
    if isinstance(node, ast.ReindexStmt) and node.relation is not None:
        concurrent = any(option.defname == "concurrently" for option in node.params or ())
        return on(node.relation, Lock.SHARE_UPDATE_EXCLUSIVE if concurrent else Lock.SHARE)
    if isinstance(node, ast.VacuumStmt):
        full = any(option.defname == "full" for option in node.options or ())
        lock = Lock.ACCESS_EXCLUSIVE if full else Lock.SHARE_UPDATE_EXCLUSIVE
        return tuple(TableLock(table_of(r.relation), lock) for r in node.rels or ()), ()
    if isinstance(node, ast.RefreshMatViewStmt):
        return on(node.relation, Lock.EXCLUSIVE if node.concurrent else Lock.ACCESS_EXCLUSIVE)
    return (), ()


def _constraints_of_create(node: Any) -> Iterator[Any]:
    from pglast import ast

    for element in node.tableElts or ():
        if isinstance(element, ast.Constraint):
            yield element
        elif isinstance(element, ast.ColumnDef):
            yield from (c for c in element.constraints or () if isinstance(c, ast.Constraint))


def _drop_locks(node: Any) -> tuple[tuple[TableLock, ...], tuple[TableLock, ...]]:
    from pglast.enums import ObjectType

    names = [
        Table(name=parts[-1], schema=parts[-2] if len(parts) > 1 else None)
        for parts in (
            [part.sval for part in obj] for obj in node.objects or () if isinstance(obj, tuple)
        )
    ]
    if node.removeType in (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_MATVIEW):
        return tuple(TableLock(name, Lock.ACCESS_EXCLUSIVE) for name in names), ()
    if node.removeType == ObjectType.OBJECT_INDEX:
        lock = Lock.SHARE_UPDATE_EXCLUSIVE if node.concurrent else Lock.ACCESS_EXCLUSIVE
        return (), tuple(TableLock(name, lock) for name in names)
    return (), ()


# ALTER TABLE subcommands that take less than ACCESS EXCLUSIVE (AlterTableGetLockLevel).
_ALTER_LOCKS = {
    "AT_ValidateConstraint": Lock.SHARE_UPDATE_EXCLUSIVE,
    "AT_SetStatistics": Lock.SHARE_UPDATE_EXCLUSIVE,
    "AT_ClusterOn": Lock.SHARE_UPDATE_EXCLUSIVE,
    "AT_DropCluster": Lock.SHARE_UPDATE_EXCLUSIVE,
    "AT_SetRelOptions": Lock.SHARE_UPDATE_EXCLUSIVE,
    "AT_ResetRelOptions": Lock.SHARE_UPDATE_EXCLUSIVE,
    "AT_AttachPartition": Lock.SHARE_UPDATE_EXCLUSIVE,
    "AT_EnableTrig": Lock.SHARE_ROW_EXCLUSIVE,
    "AT_EnableAlwaysTrig": Lock.SHARE_ROW_EXCLUSIVE,
    "AT_EnableReplicaTrig": Lock.SHARE_ROW_EXCLUSIVE,
    "AT_EnableTrigAll": Lock.SHARE_ROW_EXCLUSIVE,
    "AT_EnableTrigUser": Lock.SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrig": Lock.SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrigAll": Lock.SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrigUser": Lock.SHARE_ROW_EXCLUSIVE,
}


def subcommand(cmd: Any) -> str:
    """The ALTER TABLE subcommand's name (``AT_AddColumn``)."""
    from pglast.enums import AlterTableType

    return AlterTableType(cmd.subtype).name


def _alter_table_locks(node: Any) -> tuple[TableLock, ...]:
    from pglast import ast
    from pglast.enums import ConstrType

    table = table_of(node.relation)
    strongest = Lock.ACCESS_SHARE
    extra: list[TableLock] = []
    for cmd in node.cmds or ():
        name = subcommand(cmd)
        lock = _ALTER_LOCKS.get(name, Lock.ACCESS_EXCLUSIVE)
        if name == "AT_DetachPartition" and getattr(cmd.def_, "concurrent", False):
            lock = Lock.SHARE_UPDATE_EXCLUSIVE
        constraint = cmd.def_ if isinstance(cmd.def_, ast.Constraint) else None
        if (
            name == "AT_AddConstraint"
            and constraint is not None
            and constraint.contype == ConstrType.CONSTR_FOREIGN
        ):
            lock = Lock.SHARE_ROW_EXCLUSIVE
            extra.append(TableLock(table_of(constraint.pktable), Lock.SHARE_ROW_EXCLUSIVE))
        strongest = max(strongest, lock)
    return (TableLock(table, strongest), *extra)
