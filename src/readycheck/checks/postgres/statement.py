"""The one statement a ``postgres.query`` runs, read by PostgreSQL's own parser (pglast).

A statement is accepted when it only reads: a ``SELECT`` (``WITH … SELECT``, ``VALUES``,
``TABLE``, set operations), a ``SHOW``, or an ``EXPLAIN`` of one of those. Anything else is
refused when the profile is loaded, with the reason: another kind of statement, a second
statement, a data-modifying ``WITH`` (``WITH d AS (DELETE …) SELECT …``), ``SELECT … INTO``
(it creates a table), or ``FOR UPDATE``/``FOR SHARE`` (row locks the application could
queue behind). What a parser cannot see, a function that writes, is refused by the
read-only session when the statement runs.

Parameters are PostgreSQL's own ``$1``, ``$2``: the parser finds them, so each one is
bound to its value exactly where it stands, never formatted into the text.

pglast is an optional dependency (``readycheck[sql]``), imported here only when a profile
has a ``postgres.query``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pglast import ast

INSTALL_HINT = "pip install 'readycheck[sql]'"
ACCEPTED = "a SELECT, WITH … SELECT, VALUES, TABLE, SHOW or EXPLAIN"

# Statement node names whose words do not read well split from the class name.
_KIND_NAMES = {
    "VariableSetStmt": "SET",
    "TransactionStmt": "a transaction command (BEGIN, COMMIT, ...)",
    "CreateTableAsStmt": "CREATE TABLE AS (or CREATE MATERIALIZED VIEW)",
    "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW",
    "ExecuteStmt": "EXECUTE",
    "CopyStmt": "COPY",
    "CreateStmt": "CREATE TABLE",
    "IndexStmt": "CREATE INDEX",
    "ViewStmt": "CREATE VIEW",
    "VacuumStmt": "VACUUM (or ANALYZE)",
    "CheckPointStmt": "CHECKPOINT",
}
_LOCK_NAMES = {
    "LCS_FORKEYSHARE": "FOR KEY SHARE",
    "LCS_FORSHARE": "FOR SHARE",
    "LCS_FORNOKEYUPDATE": "FOR NO KEY UPDATE",
    "LCS_FORUPDATE": "FOR UPDATE",
}
_CAMEL = re.compile(r"[A-Z][a-z]*")


@dataclass(frozen=True)
class Placeholder:
    number: int
    offset: int

    @property
    def length(self) -> int:
        return len(f"${self.number}")


@dataclass(frozen=True)
class ReadOnlyStatement:
    """A statement found read-only, and where its ``$n`` placeholders stand."""

    text: str
    kind: str
    """SELECT, SHOW or EXPLAIN."""
    placeholders: tuple[Placeholder, ...]

    @property
    def declarable(self) -> bool:
        """Whether it can run as a server-side cursor (DECLARE takes SELECT and VALUES)."""
        return self.kind == "SELECT"

    @property
    def parameter_count(self) -> int:
        return max((place.number for place in self.placeholders), default=0)

    def bound(self, values: list[Any]) -> tuple[str, list[Any] | None]:
        """The text psycopg takes (``%s`` where ``$n`` stood) and the values in that order."""
        if not self.placeholders:
            return self.text, None
        parts: list[str] = []
        arguments: list[Any] = []
        position = 0
        for place in sorted(self.placeholders, key=lambda place: place.offset):
            # psycopg reads % as the start of a placeholder once values are given.
            parts.append(self.text[position : place.offset].replace("%", "%%"))
            parts.append("%s")
            arguments.append(values[place.number - 1])
            position = place.offset + place.length
        parts.append(self.text[position:].replace("%", "%%"))
        return "".join(parts), arguments


def read_only_statement(text: str) -> ReadOnlyStatement:
    """Parse ``text``; raise ValueError saying why it is refused (or pglast is missing)."""
    try:
        import pglast
        from pglast import ast, visitors
    except ImportError:
        raise ValueError(
            "postgres.query reads its statement with pglast (PostgreSQL's own parser), "
            f"which is not installed: {INSTALL_HINT}"
        ) from None

    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        message = str(exc.args[0]) if exc.args else "syntax error"
        offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        where = f" ({_line_column(text, offset)})" if offset is not None else ""
        raise ValueError(f"not valid SQL: {message}{where}") from None
    if not statements:
        raise ValueError(f"the statement is empty: postgres.query runs {ACCEPTED}")
    if len(statements) > 1:
        second = statements[1].stmt_location or 0
        raise ValueError(
            f"{len(statements)} statements (the second starts at {_line_column(text, second)}): "
            "postgres.query runs exactly one"
        )
    root = statements[0].stmt
    assert root is not None
    kind = _accepted_kind(root, ast)
    if kind is None:
        raise ValueError(f"{_kind_of(root)} does not only read: postgres.query runs {ACCEPTED}")

    class Walker(visitors.Visitor):
        def __init__(self) -> None:
            self.problems: list[str] = []
            self.placeholders: list[Placeholder] = []

        def visit(self, ancestors: Any, node: Any) -> None:
            if isinstance(node, ast.ParamRef):
                self.placeholders.append(Placeholder(node.number or 0, node.location or 0))
            elif isinstance(node, ast.IntoClause):
                self.problems.append("SELECT … INTO creates a table")
            elif isinstance(node, ast.LockingClause):
                lock = _LOCK_NAMES.get(getattr(node.strength, "name", ""), "FOR UPDATE")
                self.problems.append(
                    f"{lock} locks the rows it reads, and the application could queue behind it"
                )
            elif isinstance(node, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt):
                self.problems.append(f"it contains {_kind_of(node)}, which writes")

    walker = Walker()
    walker(statements[0])
    if walker.problems:
        found = "; ".join(dict.fromkeys(walker.problems))
        raise ValueError(f"{found}: postgres.query runs statements that only read")
    return ReadOnlyStatement(text, kind, tuple(walker.placeholders))


def _accepted_kind(root: ast.Node | None, ast_module: Any) -> str | None:
    if isinstance(root, ast_module.SelectStmt):
        return "SELECT"
    if isinstance(root, ast_module.VariableShowStmt):
        return "SHOW"
    if isinstance(root, ast_module.ExplainStmt):
        inner = _accepted_kind(root.query, ast_module)
        return "EXPLAIN" if inner in ("SELECT", "SHOW") else None
    return None


def _kind_of(node: object) -> str:
    name = type(node).__name__
    if name in _KIND_NAMES:
        return _KIND_NAMES[name]
    if name == "ExplainStmt":
        return f"EXPLAIN of {_kind_of(getattr(node, 'query', None))}"
    return " ".join(_CAMEL.findall(name.removesuffix("Stmt"))).upper() or name


def _line_column(text: str, offset: int) -> str:
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return f"line {line}, column {column}"
