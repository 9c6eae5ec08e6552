"""postgres.backups: WAL archiving works, and the last full backup is recent enough.

Archiving is read from ``pg_stat_archiver`` and the server's settings. A failure newer than
the last success means archiving is failing now. An old last archived segment matters only
when segments are waiting: a server that wrote no new segment since (idle, no
``archive_timeout``) has nothing to archive, and is not failing. A server with archiving
off gets its own outcome, which says so, instead of a FAIL for archiving that never ran
(unless the profile requires archiving).

The last full backup is read from the tool that took it, run through the ``command``
check's process handling (a time limit, its whole process group killed after it, output
capped): ``pgbackrest info --output=json``, ``wal-g backup-list --json``, or a file's
modification time (a dump, or a marker the backup job touches).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from readycheck.checks.postgres import PostgresParams
from readycheck.checks.postgres.session import with_session
from readycheck.params import CheckParams
from readycheck.redact import looks_secret
from readycheck.registry import check
from readycheck.results import Outcome, Status
from readycheck.units import Duration, Size, counted

if TYPE_CHECKING:
    from collections.abc import Iterator

    from readycheck.checks.postgres.session import Session
    from readycheck.context import Context

_TOOL_OUTPUT = Size("4MB")
_WAL_NAME_LENGTH = 24


class LastBackup(CheckParams):
    source: Literal["pgbackrest", "wal-g", "file"] = Field(
        description="Where the last full backup is read from: `pgbackrest` (info "
        "--output=json), `wal-g` (backup-list --json), or `file` (its modification time).",
    )
    max_age: Duration = Field(description="FAIL when the last full backup is older than this.")
    stanza: str | None = Field(
        None, description="pgbackrest: the stanza (required when the repository has several)."
    )
    path: str | None = Field(
        None, description="file: the file whose modification time is the last backup's."
    )
    command: list[str] | None = Field(
        None,
        description="The tool's command, to which the arguments are added (default: "
        "`[pgbackrest]` or `[wal-g]`; e.g. `[sudo, -u, postgres, pgbackrest]`).",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables for the tool (its storage settings); values "
        "under names like *_KEY, *_SECRET, *PASSWORD* never appear in any output.",
    )

    @model_validator(mode="after")
    def _source_needs(self) -> LastBackup:
        if self.source == "file" and not self.path:
            raise ValueError("source: file needs path")
        if self.source != "file" and self.path:
            raise ValueError(f"path is for source: file, not {self.source}")
        if self.source != "pgbackrest" and self.stanza:
            raise ValueError("stanza is for source: pgbackrest")
        if self.command is not None and not self.command:
            raise ValueError("command is empty: name the program")
        return self

    def secret_values(self) -> Iterator[str]:
        yield from super().secret_values()
        yield from (value for name, value in self.env.items() if looks_secret(name))


class BackupsParams(PostgresParams):
    wal_archiving: Literal["required", "if_enabled", "ignore"] = Field(
        "if_enabled",
        description="`required`: FAIL when the server does not archive WAL; `if_enabled`: "
        "check archiving when it is on, and say so when it is off; `ignore`: do not check it.",
    )
    max_archive_age: Duration = Field(
        Duration("1h"),
        description="FAIL when WAL segments are waiting and the last one archived is older "
        "than this.",
    )
    last_backup: LastBackup | None = Field(
        None, description="Where to read the last full backup's time, and how old it may be."
    )


@check("postgres.backups", params=BackupsParams, category="database")
async def backups(p: BackupsParams, ctx: Context) -> Outcome:
    """Check WAL archiving (pg_stat_archiver) and the age of the last full backup."""
    return await with_session(p, ctx, lambda session: _evaluate(p, session, ctx))


@dataclass(frozen=True)
class Part:
    status: Status
    facts: tuple[str, ...]
    problem: str | None = None
    remediation: str | None = None


async def _evaluate(p: BackupsParams, session: Session, ctx: Context) -> Outcome:
    parts: list[Part] = []
    metrics: dict[str, float] = {}
    if p.wal_archiving != "ignore":
        parts.append(await _archiving(p, session, metrics))
    if p.last_backup is not None:
        parts.append(await _last_backup(p.last_backup, ctx, metrics))
    evidence = [fact for part in parts for fact in part.facts]
    worst = max((part.status for part in parts), key=lambda status: status.rank)
    problems = [part.problem for part in parts if part.problem]
    remedies = " ".join(part.remediation for part in parts if part.remediation) or None
    if worst is Status.SKIP and len(parts) == 1 and parts[0].problem is None:
        return Outcome.skipped(parts[0].facts[0], evidence=evidence, metrics=metrics)
    if problems and worst in (Status.FAIL, Status.ERROR):
        report = Outcome.failed if worst is Status.FAIL else Outcome.errored
        return report("; ".join(problems), evidence=evidence, metrics=metrics, remediation=remedies)
    return Outcome.passed(
        "; ".join(part.facts[0] for part in parts), evidence=evidence, metrics=metrics
    )


# -- WAL archiving ------------------------------------------------------------------------


async def _archiving(p: BackupsParams, session: Session, metrics: dict[str, float]) -> Part:
    (
        mode,
        command,
        library,
        in_recovery,
        archived_count,
        last_archived,
        archived_age,
        failed_count,
        last_failed,
        failed_age,
        failing,
        current_timeline,
        position,
        segment_size,
    ) = await session.fetchone(
        "SELECT current_setting('archive_mode'), current_setting('archive_command'),"
        " coalesce(current_setting('archive_library', true), ''), pg_is_in_recovery(),"
        " a.archived_count, a.last_archived_wal,"
        " extract(epoch FROM now() - a.last_archived_time)::float8,"
        " a.failed_count, a.last_failed_wal,"
        " extract(epoch FROM now() - a.last_failed_time)::float8,"
        " a.last_failed_time > coalesce(a.last_archived_time, '-infinity'),"
        " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,"
        " CASE WHEN pg_is_in_recovery() THEN NULL"
        "  ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint END,"
        " (SELECT setting::bigint * CASE unit WHEN '8kB' THEN 8192 ELSE 1 END"
        "  FROM pg_settings WHERE name = 'wal_segment_size')"
        " FROM pg_stat_archiver a"
    )
    archives_here = mode == "always" or (mode == "on" and not in_recovery)
    if not archives_here:
        said = (
            f"WAL archiving is off (archive_mode = {mode})"
            if mode == "off"
            else "WAL is not archived here: a standby with archive_mode = on leaves it to the "
            "primary"
        )
        if p.wal_archiving == "required":
            return Part(
                Status.FAIL,
                (said,),
                said,
                "Turn archiving on (archive_mode = on and an archive_command or "
                "archive_library; a restart is needed), or point the DSN at the server "
                "that archives.",
            )
        return Part(Status.SKIP, (f"{said}: not checked",))

    metrics["archive_failed_count"] = float(failed_count or 0)
    metrics["archived_count"] = float(archived_count or 0)
    tool = f"archive_library {library}" if library else "archive_command"
    if not command and not library:
        problem = (
            "archive_mode is on but neither archive_command nor archive_library is set: "
            "WAL segments pile up in pg_wal until one is"
        )
        return Part(
            Status.FAIL,
            (problem,),
            problem,
            "Set archive_command (or archive_library) and reload the server.",
        )
    facts = [
        f"archive_mode {mode}, {tool}",
        f"{counted(archived_count or 0, 'segment')} archived and "
        f"{counted(failed_count or 0, 'failure')} since "
        "the statistics were reset",
    ]
    if archived_age is not None:
        metrics["last_archived_age_s"] = round(float(archived_age), 1)
        facts.append(f"last archived: {last_archived}, {_age(archived_age)} ago")
    if failed_age is not None:
        facts.append(f"last failure: {last_failed}, {_age(failed_age)} ago")
    if failing:
        since = f"last success {_age(archived_age)} ago" if archived_age is not None else "none yet"
        problem = (
            f"WAL archiving is failing: the last attempt ({last_failed}, {_age(failed_age)} "
            f"ago) failed, with no success since ({since})"
        )
        return Part(
            Status.FAIL,
            (problem, *facts),
            problem,
            "Read the server log for the archive command's error (storage full, credentials, "
            "network); segments wait in pg_wal until it succeeds.",
        )
    current = _segment_being_written(current_timeline, position, segment_size)
    waiting = _segments_between(last_archived, current, segment_size)
    if waiting is not None:
        metrics["segments_waiting"] = float(waiting)
        facts.append(
            "nothing waiting to be archived"
            if waiting == 0
            else f"{counted(waiting, 'completed segment')} waiting to be archived"
        )
    if archived_age is None:
        facts.append("no segment archived yet")
    # An old last archive is a stall only when something is waiting (or it cannot be told).
    elif archived_age > p.max_archive_age.seconds and waiting != 0:
        problem = (
            f"WAL archiving is behind: the last segment was archived {_age(archived_age)} "
            f"ago (limit {p.max_archive_age})"
        )
        return Part(
            Status.FAIL,
            (problem, *facts),
            problem,
            "Find out why the archiver does not keep up (pg_stat_archiver, the server log).",
        )
    return Part(Status.PASS, (f"WAL archiving works ({facts[0]})", *facts[1:]))


def _segment_being_written(
    name: str | None, position: int | None, segment_size: int | None
) -> str | None:
    """The name of the segment the next WAL goes into, on the timeline of ``name``.

    Not ``pg_walfile_name(pg_current_wal_lsn())`` alone: at a segment boundary (right after
    a switch, as archive_timeout makes on an idle server) it names the segment just
    completed, which is then not counted as waiting however long the archiver is stuck."""
    if not name or position is None or not segment_size or len(name) != _WAL_NAME_LENGTH:
        return None
    per_id = 0x1_0000_0000 // int(segment_size)
    number = int(position) // int(segment_size)
    return f"{name[:8]}{number // per_id:08X}{number % per_id:08X}"


def _segments_between(
    last: str | None, current: str | None, segment_size: int | None
) -> int | None:
    """Completed segments not archived yet: those between the last archived and the one
    being written. None when the names do not tell (another timeline, a .partial or
    .history file, a standby)."""
    if not current or not segment_size or len(current) != _WAL_NAME_LENGTH:
        return None
    if last is None:
        return None
    if len(last) != _WAL_NAME_LENGTH or last[:8] != current[:8]:
        return None
    try:
        per_id = 0x1_0000_0000 // int(segment_size)
        last_number = int(last[8:16], 16) * per_id + int(last[16:], 16)
        current_number = int(current[8:16], 16) * per_id + int(current[16:], 16)
    except ValueError:
        return None
    return max(0, current_number - last_number - 1)


# -- the last full backup -----------------------------------------------------------------


async def _last_backup(spec: LastBackup, ctx: Context, metrics: dict[str, float]) -> Part:
    if spec.source == "file":
        assert spec.path is not None
        path = ctx.resolve(spec.path)
        try:
            finished = os.stat(path).st_mtime
        except OSError as exc:
            problem = f"the backup file {path} cannot be read: {exc.strerror or exc}"
            return Part(Status.FAIL, (problem,), problem, "Check that the backup job ran.")
        return _judge_age(spec, time.time() - finished, f"{path} (modification time)", metrics)
    found = await _ask_tool(spec, ctx)
    if isinstance(found, Part):
        return found
    label, age = found
    return _judge_age(spec, age, label, metrics)


def _judge_age(spec: LastBackup, age: float, label: str, metrics: dict[str, float]) -> Part:
    metrics["last_full_backup_age_s"] = round(age, 1)
    fact = f"last full backup: {label}, {_age(age)} ago (limit {spec.max_age})"
    if age > spec.max_age.seconds:
        problem = f"the last full backup is {_age(age)} old (limit {spec.max_age})"
        return Part(
            Status.FAIL,
            (fact,),
            problem,
            "Find out why the scheduled backup did not run (its job's log), and take one.",
        )
    return Part(Status.PASS, (fact,))


async def _ask_tool(spec: LastBackup, ctx: Context) -> tuple[str, float] | Part:
    from readycheck.checks.command import ProgramNotStarted, describe_exit, run_program

    if spec.source == "pgbackrest":
        base = spec.command or ["pgbackrest"]
        stanza = [f"--stanza={spec.stanza}"] if spec.stanza else []
        argv = [*base, *stanza, "--output=json", "info"]
    else:
        argv = [*(spec.command or ["wal-g"]), "backup-list", "--json", "--detail"]
    shown = " ".join(argv)
    try:
        ran = await run_program(
            argv,
            cwd=ctx.base_dir,
            env={**os.environ, **spec.env},
            limit=ctx.remaining() - 0.5,
            max_output=_TOOL_OUTPUT,
        )
    except ProgramNotStarted as failure:
        problem = f"{shown}: {failure.outcome.summary}"
        return Part(Status.ERROR, (problem,), problem, failure.outcome.remediation)
    last_line = next((line for line in reversed(ran.output.splitlines()) if line.strip()), "")
    if ran.returncode is None:
        problem = f"{shown} did not finish within {Duration(round(ran.limit, 3))}"
        return Part(Status.ERROR, (problem,), problem)
    if ran.returncode != 0:
        problem = f"{shown}: {describe_exit(ran.returncode)}" + (
            f": {last_line}" if last_line else ""
        )
        return Part(Status.ERROR, (problem,), problem, f"Run `{shown}` by hand to see why.")
    try:
        document = json.loads(ran.output) if ran.output.strip() else []
    except ValueError:
        problem = f"{shown} did not print JSON" + (f": {last_line}" if last_line else "")
        return Part(Status.ERROR, (problem,), problem)
    reader = _pgbackrest_last_full if spec.source == "pgbackrest" else _walg_last_full
    try:
        return reader(document, spec)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        problem = f"{shown} printed JSON of an unexpected shape ({type(exc).__name__}: {exc})"
        return Part(Status.ERROR, (problem,), problem)


def _pgbackrest_last_full(document: Any, spec: LastBackup) -> tuple[str, float] | Part:
    stanzas = [entry for entry in document if not spec.stanza or entry.get("name") == spec.stanza]
    if not stanzas:
        problem = (
            f"pgbackrest knows no stanza {spec.stanza}"
            if spec.stanza
            else "pgbackrest knows no stanza"
        )
        return Part(
            Status.FAIL, (problem,), problem, "Create the stanza (pgbackrest stanza-create)."
        )
    if len(stanzas) > 1:
        names = ", ".join(str(entry.get("name")) for entry in stanzas)
        problem = f"pgbackrest has several stanzas ({names}): name one in last_backup.stanza"
        return Part(Status.ERROR, (problem,), problem)
    stanza = stanzas[0]
    status = stanza.get("status") or {}
    fulls = [
        backup
        for backup in stanza.get("backup") or []
        if backup.get("type") == "full" and not backup.get("error")
    ]
    if not fulls:
        said = status.get("message") or "no backup"
        problem = f"pgbackrest stanza {stanza.get('name')} has no full backup ({said})"
        return Part(
            Status.FAIL, (problem,), problem, "Take a full backup (pgbackrest backup --type=full)."
        )
    last = max(fulls, key=lambda backup: int(backup["timestamp"]["stop"]))
    age = time.time() - int(last["timestamp"]["stop"])
    return f"pgbackrest {stanza.get('name')} {last.get('label')}", age


def _walg_last_full(document: Any, spec: LastBackup) -> tuple[str, float] | Part:
    # Delta backups are named base_<segment>_D_<base segment>.
    fulls = [backup for backup in document or [] if "_D_" not in str(backup["backup_name"])]
    if not fulls:
        problem = "wal-g lists no full backup"
        return Part(Status.FAIL, (problem,), problem, "Take a full backup (wal-g backup-push).")

    def finished(backup: dict[str, Any]) -> datetime:
        text = str(backup.get("finish_time") or backup["time"])
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    last = max(fulls, key=finished)
    age = (datetime.now(UTC) - finished(last)).total_seconds()
    return f"wal-g {last['backup_name']}", age


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"
