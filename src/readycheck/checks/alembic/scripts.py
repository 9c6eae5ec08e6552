"""The Alembic scripts shipped with the code, and the revisions a database has applied.

The scripts are read with Alembic's own ``ScriptDirectory``, which imports each revision
file but never the application's ``env.py``. Reading imports Python files, so it runs in
a worker thread bounded by the check's time; ``sys.path`` (which Alembic changes for
``prepend_sys_path``) is restored afterwards, one reader at a time.

The database side is one ``SELECT`` from the version table in readycheck's safe session.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator

from readycheck.checks.postgres import PostgresParams
from readycheck.checks.postgres.session import REPORT_MARGIN_SECONDS
from readycheck.params import INPUT_FILE, profile_path
from readycheck.results import Outcome
from readycheck.units import Duration, format_duration_ms

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from readycheck.checks.postgres.session import Session
    from readycheck.context import Context

SHOWN = 10
_SYS_PATH = threading.Lock()


class ScriptsParams(PostgresParams):
    """Where the scripts are and where the database records its revisions."""

    script_location: str | None = Field(
        None,
        description="The Alembic scripts folder (the one holding versions/), relative to "
        "the profile's directory. Give this or `config`.",
    )
    config: Annotated[str | None, INPUT_FILE] = Field(
        None,
        description="An alembic.ini to read script_location (and prepend_sys_path) from; "
        "relative paths in it are taken from its own folder.",
    )
    version_table: str = Field(
        "alembic_version", min_length=1, description="The table Alembic records revisions in."
    )
    version_table_schema: str | None = Field(
        None, description="The version table's schema (unset: the session's search_path)."
    )

    @field_validator("script_location")
    @classmethod
    def _scripts_folder_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        path = profile_path(value, info) if value else None
        if path is not None and not path.is_dir():
            what = "is a file, not a folder" if path.exists() else "does not exist"
            raise ValueError(
                f"{value} {what}: name the Alembic scripts folder (the one holding env.py "
                "and versions/), relative to the profile's folder"
            )
        return value

    @field_validator("config")
    @classmethod
    def _config_names_scripts(cls, value: str | None, info: ValidationInfo) -> str | None:
        path = profile_path(value, info) if value else None
        if path is not None:
            problem = _ini_problem(path)
            if problem:
                raise ValueError(f"{value} {problem}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ScriptsParams:
        if (self.script_location is None) == (self.config is None):
            raise ValueError(
                "give either script_location (a scripts folder) or config (an alembic.ini)"
            )
        return self

    @property
    def version_table_name(self) -> str:
        schema = self.version_table_schema
        return f"{schema}.{self.version_table}" if schema else self.version_table


@dataclass(frozen=True)
class Scripts:
    """What the scripts folder says: every revision, its parents, and the heads."""

    heads: tuple[str, ...]
    order: tuple[str, ...]
    """Every revision in an order they can be applied in (base first)."""
    messages: dict[str, str]
    parents: dict[str, tuple[str, ...]]
    modules: Mapping[str, ModuleType] = field(default_factory=dict)
    """Each revision's module, as Alembic imported it (``upgrade()`` is in it)."""
    paths: Mapping[str, str] = field(default_factory=dict)
    sys_path: tuple[str, ...] = ()
    """What the scripts' alembic.ini adds to sys.path (prepend_sys_path)."""

    def label(self, revision: str) -> str:
        message = self.messages.get(revision)
        return f"{revision} ({message})" if message else revision

    def labels(self, revisions: Iterable[str]) -> str:
        shown = list(revisions)
        text = ", ".join(self.label(revision) for revision in shown[:SHOWN])
        return text + (f" and {len(shown) - SHOWN} more" if len(shown) > SHOWN else "")

    def applied(self, current: Iterable[str]) -> set[str]:
        """The revisions a database at ``current`` has applied: those and their ancestors."""
        seen: set[str] = set()
        stack = [revision for revision in current if revision in self.parents]
        while stack:
            revision = stack.pop()
            if revision not in seen:
                seen.add(revision)
                stack.extend(self.parents[revision])
        return seen

    def pending(self, current: Iterable[str]) -> list[str]:
        """What ``alembic upgrade heads`` would apply to a database at ``current``, in order."""
        applied = self.applied(current)
        return [revision for revision in self.order if revision not in applied]


class ScriptsUnreadable(Exception):
    pass


# What a revision's own code (or the application it imports) may raise. sys.exit() is
# among them (a settings guard that calls it is common): raised in the worker thread that
# runs the revision, it would travel up through asyncio and end readycheck with its code,
# no result and no outputs. Revisions only ever run in worker threads, where no signal
# raises KeyboardInterrupt, so catching it there catches only a revision's own.
REVISION_ERRORS = (Exception, SystemExit, KeyboardInterrupt)


@contextlib.contextmanager
def importing(entries: Iterable[str] = ()) -> Iterator[None]:
    """Run Alembic code that imports the scripts (or what they import), one caller at a
    time, with ``entries`` in front of sys.path; sys.path is restored afterwards."""
    with _SYS_PATH:
        saved = list(sys.path)
        sys.path[:0] = list(entries)
        try:
            yield
        finally:
            sys.path[:] = saved


def scripts_path(p: ScriptsParams, ctx: Context) -> tuple[Path, str] | Outcome:
    """The folder (or alembic.ini) to read, and how messages name it; or the ERROR when it
    is missing."""
    if p.config is not None:
        path = ctx.resolve(p.config)
        if not path.is_file():
            return Outcome.errored(f"{p.config} does not exist (config)")
        return path, f"the scripts named by {p.config}"
    location = p.script_location or ""
    path = ctx.resolve(location)
    if not path.is_dir():
        return Outcome.errored(f"{location} is not a folder (script_location)")
    return path, f"the scripts in {location}"


async def load_scripts(p: ScriptsParams, ctx: Context) -> Scripts | Outcome:
    """Read the scripts in a worker thread within the check's time; an ERROR when they
    cannot be read or hold no revision."""
    import asyncio

    found = scripts_path(p, ctx)
    if isinstance(found, Outcome):
        return found
    path, source = found
    limit = max(0.1, ctx.remaining() - REPORT_MARGIN_SECONDS)
    try:
        scripts = await asyncio.wait_for(asyncio.to_thread(read_scripts, path), timeout=limit)
    except TimeoutError:
        # The thread cannot be stopped; it ends when the import that hangs does.
        return Outcome.errored(f"reading {source} took longer than {Duration(round(limit, 3))}")
    except ScriptsUnreadable as exc:
        return Outcome.errored(
            f"{source} cannot be read: {ctx.redactor.redact(str(exc))}",
            remediation="Run `alembic heads` in the project to see the same error.",
        )
    if not scripts.order:
        return Outcome.errored(f"{source} hold no revision")
    return scripts


def read_scripts(path: Path) -> Scripts:
    """Read a scripts folder, or the one an alembic.ini names, with Alembic's API.

    ``ScriptDirectory.from_config`` prepends the ini's ``prepend_sys_path`` to sys.path
    (revision files may import the application); sys.path is restored afterwards.
    """
    with importing():
        return _read_scripts(path)


def _read_scripts(path: Path) -> Scripts:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    try:
        if path.is_dir():
            config = Config()
            config.set_main_option("script_location", _escaped(str(path)))
        else:
            config = Config(str(path))
            _anchor_script_location(config, path.parent)
        before = len(sys.path)
        script = ScriptDirectory.from_config(config)
        # Alembic resolves a relative prepend_sys_path against the working directory;
        # `alembic` is run from the ini's folder, so resolve against that instead.
        added = len(sys.path) - before
        sys.path[:added] = [str(path.parent / entry) for entry in sys.path[:added]]
        return _scripts_of(script, tuple(sys.path[:added]))
    except REVISION_ERRORS as exc:
        raise ScriptsUnreadable(_describe(exc, path)) from None


def _describe(exc: BaseException, path: Path) -> str:
    """The exception, and the revision file and line it came from when it came from one."""
    folder = (path if path.is_dir() else path.parent).resolve()
    text = f"{type(exc).__name__}: {str(exc).strip()}"
    where = None
    if isinstance(exc, SyntaxError) and exc.filename:
        where = (exc.filename, exc.lineno)
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename.endswith(".py") and Path(frame.filename).is_relative_to(folder):
                where = (frame.filename, frame.lineno)
    if where is None:
        return text
    file, line = where
    shown = Path(file).relative_to(folder) if Path(file).is_relative_to(folder) else Path(file)
    location = f"{shown}:{line}"
    return text if location in text else f"{text} (in {location})"


def _anchor_script_location(config: Config, folder: Path) -> None:
    location = config.get_main_option("script_location")
    if not location:
        raise ValueError("the alembic.ini has no script_location")
    scripts = _scripts_folder(location, folder)
    if scripts is not None and scripts.is_dir():
        config.set_main_option("script_location", _escaped(str(scripts)))


def _scripts_folder(location: str, ini_folder: Path) -> Path | None:
    """The folder an alembic.ini's script_location names: taken from the ini's folder
    when there is one there (as `alembic` run from that folder would), else as written;
    None for "package:folder", a package resource Alembic resolves itself."""
    path = Path(location)
    if ":" in location and not path.is_absolute():
        return None
    return ini_folder / path if not path.is_absolute() and (ini_folder / path).is_dir() else path


def _ini_problem(ini: Path) -> str | None:
    """What keeps an alembic.ini from naming a scripts folder, read without Alembic (this
    runs when the profile loads). Its text is never quoted: it may hold sqlalchemy.url."""
    import configparser

    if not ini.is_file():
        return "does not exist" if not ini.exists() else "is not a file"
    parser = configparser.ConfigParser(defaults={"here": str(ini.parent)})
    try:
        parser.read(ini, encoding="utf-8")
        location = parser.get("alembic", "script_location", fallback=None)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return "cannot be read as an ini file with an [alembic] section"
    if not location:
        return "has no script_location in its [alembic] section"
    scripts = _scripts_folder(location, ini.parent)
    if scripts is not None and not scripts.is_dir():
        where = "" if Path(location).is_absolute() else " (relative to the ini's folder)"
        return f"names script_location {location}, which is not a folder{where}"
    return None


def _escaped(value: str) -> str:
    # Config values go through ConfigParser interpolation.
    return value.replace("%", "%%")


def _scripts_of(script: ScriptDirectory, sys_path: tuple[str, ...]) -> Scripts:
    newest_first = list(script.walk_revisions())
    messages: dict[str, str] = {}
    parents: dict[str, tuple[str, ...]] = {}
    for revision in newest_first:
        doc = (revision.doc or "").strip().splitlines()
        messages[revision.revision] = doc[0].strip() if doc else ""
        down = revision.down_revision
        ancestors = [down] if isinstance(down, str) else list(down or ())
        depends = revision.dependencies
        for dependency in [depends] if isinstance(depends, str) else list(depends or ()):
            ancestors.extend(found.revision for found in script.get_revisions(dependency) if found)
        parents[revision.revision] = tuple(ancestors)
    return Scripts(
        heads=tuple(script.get_heads()),
        order=tuple(revision.revision for revision in reversed(newest_first)),
        messages=messages,
        parents=parents,
        modules={revision.revision: revision.module for revision in newest_first},
        paths={revision.revision: revision.path for revision in newest_first},
        sys_path=sys_path,
    )


class VersionTableLocked(Exception):
    """The version table is locked (a migration is running); ``outcome`` says by whom."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.summary)
        self.outcome = outcome


async def current_revisions(p: ScriptsParams, session: Session) -> list[str] | None:
    """The revisions the database records, sorted; None when it has no version table.

    Raises :class:`VersionTableLocked` when a migration holds the table.
    """
    import psycopg
    from psycopg import sql

    if p.version_table_schema:
        (oid,) = await session.fetchone(
            "SELECT to_regclass(quote_ident(%s) || '.' || quote_ident(%s))::oid",
            (p.version_table_schema, p.version_table),
        )
        table = sql.Identifier(p.version_table_schema, p.version_table)
    else:
        (oid,) = await session.fetchone(
            "SELECT to_regclass(quote_ident(%s))::oid", (p.version_table,)
        )
        table = sql.Identifier(p.version_table)
    if oid is None:
        return None
    try:
        rows = await session.fetch(sql.SQL("SELECT version_num FROM {}").format(table))
    except psycopg.errors.LockNotAvailable:
        raise VersionTableLocked(await _locked(p.version_table_name, oid, session)) from None
    return sorted(str(version) for (version,) in rows)


async def _locked(table_name: str, oid: int, session: Session) -> Outcome:
    """The version table is locked: name who holds the lock, as far as we may see."""
    holders = await session.fetch(
        "SELECT l.pid, l.mode, a.application_name, a.state, now() - a.xact_start"
        " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.relation = %s AND l.granted AND l.pid <> pg_backend_pid()"
        " ORDER BY l.pid",
        (oid,),
    )
    evidence = []
    for pid, mode, application, state, age in holders[:SHOWN]:
        parts = [f"pid {pid} holds {mode}"]
        if application:
            parts.append(f"application {application}")
        if state:
            parts.append(str(state))
        if age is not None:
            parts.append(f"transaction open for {format_duration_ms(age.total_seconds() * 1000)}")
        evidence.append(", ".join(parts))
    return Outcome.errored(
        f"the version table {table_name} is locked by another session (waited "
        f"{session.limits.lock_timeout}): a migration is probably running",
        evidence=evidence,
        remediation="Wait for the migration to finish and run the check again; if nothing "
        "should be migrating, find the session in pg_stat_activity.",
    )
