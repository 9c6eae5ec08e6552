"""The SQL the pending revisions would send, rendered offline without the application's env.py.

This is what ``alembic upgrade --sql`` does, minus env.py: a ``MigrationContext``
configured ``as_sql`` for the PostgreSQL dialect, and each revision's ``upgrade()`` called
with ``alembic.op`` bound to ``Operations`` on it (``Operations.context``). Every statement
Alembic writes lands in an output buffer of ours, one write per operation, tagged with
its revision.

A revision that needs a live connection (``op.get_bind()``, ``op.get_context().bind``:
data migrations that read before they write) cannot be rendered: the connection handed to
it raises :class:`NeedsConnection` on first use, and the revision is reported by name.
What it wrote before that is kept: those statements would run too.

``alembic.op`` is one proxy for the whole process, so rendering runs one caller at a time
(the same lock that guards sys.path while scripts are read).

Transactions follow Alembic's defaults for PostgreSQL (transactional DDL): one
transaction around the whole upgrade, or one per revision with
``transaction_per_migration`` (a setting of env.py, which is not run, so a parameter
here); ``autocommit_block()`` commits before its block and begins again after it.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from readycheck.checks.alembic.scripts import REVISION_ERRORS, importing

if TYPE_CHECKING:
    from readycheck.checks.alembic.scripts import Scripts


@dataclass(frozen=True)
class Chunk:
    """One write of Alembic's output: the SQL of one operation (which may hold several
    statements, as ``op.execute`` of a script does)."""

    revision: str
    sql: str


@dataclass(frozen=True)
class Unrenderable:
    """A revision whose ``upgrade()`` could not be rendered offline, and why."""

    revision: str
    reason: str
    needs_connection: bool


@dataclass(frozen=True)
class Rendering:
    chunks: tuple[Chunk, ...]
    unrenderable: tuple[Unrenderable, ...]


class NeedsConnection(Exception):
    """Raised when a revision rendered offline reaches for the database connection."""


class _NoConnection:
    """Stands where a connection would be: any use of it means the revision needs one."""

    def __init__(self, how: str) -> None:
        self._how = how

    def __getattr__(self, name: str) -> NoReturn:
        raise NeedsConnection(self._how)

    def in_transaction(self) -> bool:
        # Asked by autocommit_block() even when rendering offline; the answer does not
        # matter there (it writes COMMIT and BEGIN itself).
        return False

    def __bool__(self) -> bool:
        return True


class _Output:
    """Alembic's output buffer: each write is one operation's SQL."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.revision = ""

    def write(self, text: str) -> None:
        text = text.strip()
        if text:
            self.chunks.append(Chunk(self.revision, text))

    def flush(self) -> None:
        pass


def render(
    scripts: Scripts, pending: Sequence[str], *, transaction_per_migration: bool = False
) -> Rendering:
    """Render ``pending`` (in apply order) to SQL; see the module docstring."""
    with importing(scripts.sys_path):
        return _render(scripts, pending, transaction_per_migration)


def _render(scripts: Scripts, pending: Sequence[str], per_migration: bool) -> Rendering:
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    output = _Output()
    context = MigrationContext.configure(
        dialect_name="postgresql",
        opts={"as_sql": True, "output_buffer": output, "literal_binds": True},
    )
    no_connection = _NoConnection("op.get_context().bind")
    context.connection = context.impl.connection = no_connection  # type: ignore[assignment]
    unrenderable = []
    with Operations.context(context) as operations:
        # `op.get_bind()` in a revision calls this instance's get_bind (alembic.op's
        # functions forward to the Operations in context): shadow it on the instance.
        vars(operations)["get_bind"] = _needs_connection
        for index, revision in enumerate(pending):
            output.revision = revision
            if index == 0 or per_migration:
                context.impl.emit_begin()
            problem = _upgrade(scripts, revision)
            if problem is not None:
                unrenderable.append(problem)
            if per_migration or index == len(pending) - 1:
                output.revision = revision
                context.impl.emit_commit()
    return Rendering(tuple(output.chunks), tuple(unrenderable))


def _needs_connection() -> NoReturn:
    raise NeedsConnection("op.get_bind()")


def _upgrade(scripts: Scripts, revision: str) -> Unrenderable | None:
    module = scripts.modules.get(revision)
    upgrade: Any = getattr(module, "upgrade", None)
    if not callable(upgrade):
        return Unrenderable(revision, "it has no upgrade() function", needs_connection=False)
    try:
        upgrade()
    except NeedsConnection as exc:
        return Unrenderable(
            revision,
            f"it needs a live database connection ({exc}{_where(exc, scripts, revision)}): "
            "a data migration, or one that reads the database before it changes it",
            needs_connection=True,
        )
    except REVISION_ERRORS as exc:
        said = str(exc).strip().splitlines()
        return Unrenderable(
            revision,
            f"upgrade() raised {type(exc).__name__}"
            + (f": {said[0]}" if said else "")
            + _where(exc, scripts, revision)
            + " while rendered offline",
            needs_connection=False,
        )
    return None


def _where(exc: BaseException, scripts: Scripts, revision: str) -> str:
    """`` at versions/0005_x.py:12``: the revision file's line the exception came through."""
    path = scripts.paths.get(revision)
    if not path:
        return ""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == path:
            line = frame.lineno
    if line is None:
        return ""
    shown = Path(path)
    return f" at {shown.parent.name}/{shown.name}:{line}"
