"""alembic.head: the database is at the head of the Alembic scripts shipped with this code.

The scripts are read with Alembic's own ``ScriptDirectory``, which imports each revision
file but never the application's ``env.py`` (that is what ``alembic current`` and
``alembic check`` run: they connect with the application's settings and may do anything).
Nothing here runs a migration.

The database side is one ``SELECT`` from the version table in readycheck's safe session
(read-only, statement and lock timeouts, see postgres/session.py) rather than Alembic's
``MigrationContext``: the query is the same, and the session is async, cancellable and
shared with the PostgreSQL checks. A migration holding a lock on the version table makes
the ``SELECT`` give up at ``lock_timeout``, and the check names the session holding it.

Alembic is synchronous, and reading the scripts imports Python files: that runs in a
worker thread, bounded by the check's time.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator

from readycheck.checks.postgres import PostgresParams
from readycheck.checks.postgres.session import REPORT_MARGIN_SECONDS, with_session
from readycheck.params import INPUT_FILE, profile_path
from readycheck.registry import check
from readycheck.results import Outcome
from readycheck.units import Duration, format_duration_ms

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from readycheck.checks.postgres.session import Session
    from readycheck.context import Context

_SHOWN = 10
_SYS_PATH = threading.Lock()


class HeadParams(PostgresParams):
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
    allow_multiple_heads: bool = Field(
        False,
        description="Accept scripts with several heads (branches not merged); the database "
        "must then be at every head.",
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
    def _one_source(self) -> HeadParams:
        if (self.script_location is None) == (self.config is None):
            raise ValueError(
                "give either script_location (a scripts folder) or config (an alembic.ini)"
            )
        return self


@dataclass(frozen=True)
class Scripts:
    """What the scripts folder says: every revision, its parents, and the heads."""

    heads: tuple[str, ...]
    order: tuple[str, ...]
    """Every revision in an order they can be applied in (base first)."""
    messages: dict[str, str]
    parents: dict[str, tuple[str, ...]]

    def label(self, revision: str) -> str:
        message = self.messages.get(revision)
        return f"{revision} ({message})" if message else revision

    def labels(self, revisions: Iterable[str]) -> str:
        shown = list(revisions)
        text = ", ".join(self.label(revision) for revision in shown[:_SHOWN])
        return text + (f" and {len(shown) - _SHOWN} more" if len(shown) > _SHOWN else "")

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


class ScriptsUnreadable(Exception):
    pass


@check("alembic.head", params=HeadParams, category="database")
async def head(p: HeadParams, ctx: Context) -> Outcome:
    """Check that the database is at the Alembic scripts' head (no migration pending)."""
    import asyncio

    if p.config is not None:
        path, source = ctx.resolve(p.config), f"the scripts named by {p.config}"
        if not path.is_file():
            return Outcome.errored(f"{p.config} does not exist (config)")
    else:
        location = p.script_location or ""
        path, source = ctx.resolve(location), f"the scripts in {location}"
        if not path.is_dir():
            return Outcome.errored(f"{location} is not a folder (script_location)")
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
    return await with_session(p, ctx, lambda session: _compare(p, scripts, session))


def read_scripts(path: Path) -> Scripts:
    """Read a scripts folder, or the one an alembic.ini names, with Alembic's API.

    ``ScriptDirectory.from_config`` prepends the ini's ``prepend_sys_path`` to sys.path
    (revision files may import the application); sys.path is restored afterwards, one
    reader at a time so that two checks cannot restore each other's entries.
    """
    with _SYS_PATH:
        return _read_scripts(path)


def _read_scripts(path: Path) -> Scripts:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    saved_path = list(sys.path)
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
        return _scripts_of(script)
    except Exception as exc:
        raise ScriptsUnreadable(f"{type(exc).__name__}: {str(exc).strip()}") from None
    finally:
        sys.path[:] = saved_path


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


def _scripts_of(script: ScriptDirectory) -> Scripts:
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
    )


async def _compare(p: HeadParams, scripts: Scripts, session: Session) -> Outcome:
    import psycopg
    from psycopg import sql

    table_name = (
        f"{p.version_table_schema}.{p.version_table}" if p.version_table_schema else p.version_table
    )
    if p.version_table_schema:
        (oid,) = await session.fetchone(
            "SELECT to_regclass(quote_ident(%s) || '.' || quote_ident(%s))::oid",
            (p.version_table_schema, p.version_table),
        )
    else:
        (oid,) = await session.fetchone(
            "SELECT to_regclass(quote_ident(%s))::oid", (p.version_table,)
        )
    heads_line = (
        f"scripts head{'s' if len(scripts.heads) > 1 else ''}: {scripts.labels(scripts.heads)}"
    )
    if oid is None:
        return Outcome.failed(
            f"no version table {table_name}: the database has never been migrated "
            f"({len(scripts.order)} revisions pending)",
            evidence=[heads_line, f"pending, in apply order: {scripts.labels(scripts.order)}"],
            metrics={"pending": float(len(scripts.order)), "heads": float(len(scripts.heads))},
            remediation="Run `alembic upgrade head` as part of the deploy, or check "
            "version_table / version_table_schema and the DSN's database.",
        )
    table = (
        sql.Identifier(p.version_table_schema, p.version_table)
        if p.version_table_schema
        else sql.Identifier(p.version_table)
    )
    try:
        rows = await session.fetch(sql.SQL("SELECT version_num FROM {}").format(table))
    except psycopg.errors.LockNotAvailable:
        return await _locked(table_name, oid, session)
    current = sorted(str(version) for (version,) in rows)
    return _verdict(p, scripts, current, heads_line)


def _verdict(p: HeadParams, scripts: Scripts, current: list[str], heads_line: str) -> Outcome:
    known = set(scripts.parents)
    unknown = [revision for revision in current if revision not in known]
    applied = scripts.applied(current)
    pending = [revision for revision in scripts.order if revision not in applied]
    database_line = (
        f"database at {scripts.labels(current)}" if current else "database at base (no revision)"
    )
    evidence = [database_line, heads_line]
    metrics = {"heads": float(len(scripts.heads))}
    if not unknown:
        metrics["pending"] = float(len(pending))
    problems = []
    remedies = []
    if unknown:
        problems.append(
            f"the database is at {', '.join(unknown)}, which these scripts do not know: "
            "the database is ahead of this code (or on another branch)"
        )
        remedies.append(
            "deploy the code that has this revision, or downgrade the database with the "
            "code that wrote it"
        )
    if len(scripts.heads) > 1 and not p.allow_multiple_heads:
        problems.append(f"the scripts have {len(scripts.heads)} heads: {', '.join(scripts.heads)}")
        remedies.append("merge the heads (alembic merge heads) before deploying")
    if pending and not unknown:  # from an unknown revision, what is pending is unknown too
        problems.append(
            f"{len(pending)} revision{'s' if len(pending) != 1 else ''} pending: "
            + (scripts.labels(pending) if len(pending) <= 3 else ", ".join(pending[:_SHOWN]))
            + (" ..." if len(pending) > _SHOWN else "")
        )
        evidence.append(f"pending, in apply order: {scripts.labels(pending)}")
        remedies.append("run `alembic upgrade head` before (or as part of) the deploy")
    if problems:
        text = "; ".join(remedies)
        return Outcome.failed(
            "; ".join(problems),
            evidence=evidence,
            metrics=metrics,
            remediation=text[0].upper() + text[1:] + ".",
        )
    at = ", ".join(current)
    return Outcome.passed(
        f"database at head {at}" if len(current) == 1 else f"database at heads {at}",
        evidence=evidence,
        metrics=metrics,
    )


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
    for pid, mode, application, state, age in holders[:_SHOWN]:
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
