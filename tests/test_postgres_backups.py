"""postgres.backups: WAL archiving read from a real server (archiving off, working, failing),
and the last full backup read from pgbackrest, wal-g or a file through the command
machinery.

pgbackrest and wal-g are played by small scripts that print what the real tools print
(`pgbackrest info --output=json`, `wal-g backup-list --json --detail`) and record the
arguments they were given: the process handling, the JSON reading and the verdict are
the check's own."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from readycheck.checks.postgres.backups import _segment_being_written, _segments_between
from readycheck.results import Status
from tests.database_checks import run_check, run_everywhere
from tests.servers.postgres import PgDatabase, PostgresServer

HOUR = 3600


@pytest.fixture(scope="module")
def archiving_server() -> Iterator[PostgresServer]:
    """A cluster of its own that archives WAL (with a command that always succeeds).

    archive_command is set by ALTER SYSTEM, not on the command line, where it would win
    over what a test sets."""
    server = PostgresServer.start(label="test-archive", settings={"archive_mode": "on"})
    _set_archive_command(server, "true")
    yield server
    server.stop()


def _set_archive_command(server: PostgresServer, command: str) -> None:
    server.execute(sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(command)))
    server.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while server.execute("SHOW archive_command")[0][0] != command:
        assert time.monotonic() < deadline, "the new archive_command never took effect"
        time.sleep(0.05)


def _backups(tmp_path: Path, dsn: str, **params: Any) -> Any:
    return run_check(tmp_path, "postgres.backups", {"dsn": dsn, **params})


def _archive_a_segment(server: PostgresServer, *, counter: str = "archived_count") -> None:
    """Complete a segment, and wait until the archiver has counted it in ``counter``
    (``archived_count``, or ``failed_count`` when the command fails)."""
    query = f"SELECT {counter} FROM pg_stat_archiver"
    before = server.execute(query)[0][0]
    server.execute("CREATE TABLE IF NOT EXISTS filler (n int)")
    server.execute("INSERT INTO filler SELECT generate_series(1, 100)")
    server.execute("SELECT pg_switch_wal()")
    deadline = time.monotonic() + 30
    while server.execute(query)[0][0] == before:
        assert time.monotonic() < deadline, f"the archiver's {counter} never moved"
        time.sleep(0.1)


# -- WAL archiving -----------------------------------------------------------------------


def test_archiving_off_is_its_own_outcome_not_a_failure(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = _backups(tmp_path, pg_database.dsn)
    assert result.status is Status.SKIP
    assert result.summary == "WAL archiving is off (archive_mode = off): not checked"


def test_archiving_off_fails_when_the_profile_requires_it(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = _backups(tmp_path, pg_database.dsn, wal_archiving="required")
    assert result.status is Status.FAIL
    assert result.summary == "WAL archiving is off (archive_mode = off)"
    assert "archive_mode = on" in (result.remediation or "")


def test_working_archiving_passes_with_its_figures(
    archiving_server: PostgresServer, tmp_path: Path
) -> None:
    _archive_a_segment(archiving_server)
    result = _backups(tmp_path, archiving_server.dsn())
    assert result.status is Status.PASS, result.summary
    assert result.summary == "WAL archiving works (archive_mode on, archive_command)"
    assert "nothing waiting to be archived" in result.evidence
    assert any(line.startswith("last archived: 0000000") for line in result.evidence)
    assert result.metrics["segments_waiting"] == 0


def test_an_idle_server_with_an_old_last_archive_is_not_failing(
    archiving_server: PostgresServer, tmp_path: Path
) -> None:
    # Nothing waits to be archived: however old the last archive, the archiver is not behind.
    _archive_a_segment(archiving_server)
    time.sleep(1.1)
    result = _backups(tmp_path, archiving_server.dsn(), max_archive_age="1s")
    assert result.status is Status.PASS, result.summary
    assert "nothing waiting to be archived" in result.evidence


def test_archiving_stalled_with_segments_waiting_fails_on_max_archive_age(
    archiving_server: PostgresServer, tmp_path: Path
) -> None:
    # An archive command that hangs (a stuck mount, a slow store) fails nothing: the
    # segments wait while the last archive grows old.
    _archive_a_segment(archiving_server)
    # The command runs in the data directory, as the server's user: the file that holds it
    # back is put there, where that user sees it.
    data_directory = Path(archiving_server.execute("SHOW data_directory")[0][0])
    stall = data_directory / "readycheck-test-stall"
    stall.touch()
    _set_archive_command(archiving_server, f"while [ -e {stall.name} ]; do sleep 0.1; done")
    try:
        archiving_server.execute("INSERT INTO filler SELECT generate_series(1, 100)")
        archiving_server.execute("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 30
        while not archiving_server.execute(
            "SELECT now() - last_archived_time > interval '1.1 s' FROM pg_stat_archiver"
        )[0][0]:
            assert time.monotonic() < deadline, "the last archive never grew older than 1s"
            time.sleep(0.1)
        result = _backups(tmp_path, archiving_server.dsn(), max_archive_age="1s")
    finally:
        stall.unlink()
        _set_archive_command(archiving_server, "true")
        _archive_a_segment(archiving_server)  # the waiting segment, now archived
    assert result.status is Status.FAIL, result.evidence
    assert result.summary.startswith("WAL archiving is behind: the last segment was archived ")
    assert result.summary.endswith(" ago (limit 1s)")
    assert "1 completed segment waiting to be archived" in result.evidence
    assert result.metrics["segments_waiting"] == 1
    assert "pg_stat_archiver" in (result.remediation or "")


def test_failing_archiving_fails_saying_since_when(
    archiving_server: PostgresServer, tmp_path: Path
) -> None:
    _set_archive_command(archiving_server, "false")
    try:
        _archive_a_segment(archiving_server, counter="failed_count")
        result = _backups(tmp_path, archiving_server.dsn())
    finally:
        _set_archive_command(archiving_server, "true")
        _archive_a_segment(archiving_server)  # the failed segment, now archived
    assert result.status is Status.FAIL
    assert result.summary.startswith("WAL archiving is failing: the last attempt (0000000")
    assert "with no success since (last success" in result.summary
    assert result.metrics["archive_failed_count"] >= 1
    assert "server log" in (result.remediation or "")


def test_archive_mode_on_without_a_command_fails(
    archiving_server: PostgresServer, tmp_path: Path
) -> None:
    _set_archive_command(archiving_server, "")
    try:
        result = _backups(tmp_path, archiving_server.dsn())
    finally:
        _set_archive_command(archiving_server, "true")
    assert result.status is Status.FAIL
    assert result.summary == (
        "archive_mode is on but neither archive_command nor archive_library is set: "
        "WAL segments pile up in pg_wal until one is"
    )


@pytest.mark.parametrize(
    ("name", "position", "written"),
    [
        ("000000010000000000000003", 0x3_00_0123, "000000010000000000000003"),
        # Right after a switch, pg_walfile_name names the segment just completed.
        ("000000010000000000000003", 0x4_00_0000, "000000010000000000000004"),
        ("0000000200000000000000FF", 0x1_0000_0000, "000000020000000100000000"),
        (None, 0x4_00_0000, None),
    ],
)
def test_the_segment_being_written_is_the_one_the_position_falls_in(
    name: str | None, position: int, written: str | None
) -> None:
    assert _segment_being_written(name, position, 16 * 1024 * 1024) == written


@pytest.mark.parametrize(
    ("last", "current", "waiting"),
    [
        ("000000010000000000000003", "000000010000000000000004", 0),
        ("000000010000000000000003", "000000010000000000000007", 3),
        # Across a log id: 256 segments of 16 MB in each.
        ("0000000100000000000000FF", "000000010000000100000001", 1),
        ("000000010000000000000003", "000000020000000000000007", None),  # another timeline
        ("00000002.history", "000000020000000000000007", None),
        (None, "000000010000000000000007", None),
    ],
)
def test_segments_waiting_are_counted_from_the_names(
    last: str | None, current: str, waiting: int | None
) -> None:
    assert _segments_between(last, current, 16 * 1024 * 1024) == waiting


# -- the last full backup ----------------------------------------------------------------


ToolMaker = Callable[..., list[str]]


@pytest.fixture
def tool(tmp_path: Path) -> ToolMaker:
    """A stand-in for a backup tool: prints ``output`` (and exits ``code``), recording its
    arguments in ``args.json``; returns the command to run it."""

    def make(output: str, *, code: int = 0, name: str = "tool") -> list[str]:
        printed = tmp_path / f"{name}.out"
        printed.write_text(output)
        script = tmp_path / name
        script.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\n' \"$@\" > {shlex.quote(str(tmp_path / 'args'))}\n"
            f"cat {shlex.quote(str(printed))}\n"
            f"exit {code}\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return [str(script)]

    return make


def _pgbackrest_info(stanza: str, *backups: tuple[str, str, float]) -> str:
    """`pgbackrest info --output=json` for one stanza: (label, type, stop time) each."""
    entries = [
        {
            "label": label,
            "type": kind,
            "prior": None,
            "reference": None,
            "timestamp": {"start": int(stop) - 60, "stop": int(stop)},
            "archive": {"start": "000000010000000000000002", "stop": "000000010000000000000002"},
            "info": {"size": 24000000, "delta": 24000000, "repository": {"size": 3000000}},
            "database": {"id": 1, "repo-key": 1},
            "error": False,
        }
        for label, kind, stop in backups
    ]
    status = {"code": 0, "message": "ok"} if backups else {"code": 2, "message": "no valid backups"}
    return json.dumps(
        [
            {
                "name": stanza,
                "cipher": "none",
                "status": status,
                "db": [{"id": 1, "system-id": 7000000000000000000, "version": "15"}],
                "archive": [],
                "backup": entries,
                "repo": [{"key": 1, "cipher": "none", "status": status}],
            }
        ],
        indent=2,
    )


def _pgbackrest(tmp_path: Path, dsn: str, command: list[str], max_age: str = "26h") -> Any:
    return _backups(
        tmp_path,
        dsn,
        wal_archiving="ignore",
        last_backup={
            "source": "pgbackrest",
            "stanza": "main",
            "max_age": max_age,
            "command": command,
        },
    )


@pytest.mark.parametrize(
    ("full_hours_ago", "status", "summary"),
    [
        (5, Status.PASS, "last full backup: pgbackrest main 20240101-010000F, 5.0 h ago"),
        (50, Status.FAIL, "the last full backup is 2.1 days old (limit 26h)"),
    ],
)
def test_the_last_pgbackrest_full_backup_is_judged_however_recent_the_incremental(
    pg_database: PgDatabase,
    tmp_path: Path,
    tool: ToolMaker,
    full_hours_ago: int,
    status: Status,
    summary: str,
) -> None:
    now = time.time()
    command = tool(
        _pgbackrest_info(
            "main",
            ("20240101-010000F", "full", now - full_hours_ago * HOUR),
            ("20240101-010000F_20240103-010000I", "incr", now - HOUR),
        )
    )
    result = _pgbackrest(tmp_path, pg_database.dsn, command)
    assert result.status is status, result.summary
    assert result.summary.startswith(summary)
    assert (tmp_path / "args").read_text().split() == ["--stanza=main", "--output=json", "info"]
    age = result.metrics["last_full_backup_age_s"]
    assert (full_hours_ago - 0.1) * HOUR < age < (full_hours_ago + 0.1) * HOUR


def test_a_stanza_with_no_backup_fails(
    pg_database: PgDatabase, tmp_path: Path, tool: ToolMaker
) -> None:
    result = _pgbackrest(tmp_path, pg_database.dsn, tool(_pgbackrest_info("main")))
    assert result.status is Status.FAIL
    assert result.summary == "pgbackrest stanza main has no full backup (no valid backups)"


def test_a_backup_tool_that_fails_is_an_error_with_its_last_line(
    pg_database: PgDatabase, tmp_path: Path, tool: ToolMaker
) -> None:
    command = tool(
        "ERROR: [055]: unable to load info file '/var/lib/pgbackrest/backup.info'", code=55
    )
    result = _pgbackrest(tmp_path, pg_database.dsn, command)
    assert result.status is Status.ERROR
    assert result.summary.endswith(
        "--stanza=main --output=json info: exit status 55: ERROR: [055]: unable to load info "
        "file '/var/lib/pgbackrest/backup.info'"
    )


def test_a_backup_tool_that_is_not_installed_is_an_error(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = _pgbackrest(tmp_path, pg_database.dsn, ["no-such-pgbackrest"])
    assert result.status is Status.ERROR
    assert result.summary == (
        "no-such-pgbackrest --stanza=main --output=json info: command not found: no-such-pgbackrest"
    )


def test_output_that_is_not_json_is_an_error(
    pg_database: PgDatabase, tmp_path: Path, tool: ToolMaker
) -> None:
    result = _pgbackrest(tmp_path, pg_database.dsn, tool("stanza: main\n    status: ok\n"))
    assert result.status is Status.ERROR
    assert "did not print JSON" in result.summary


def _walg_list(*backups: tuple[str, float]) -> str:
    def stamp(moment: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(moment))

    return json.dumps(
        [
            {
                "backup_name": name,
                "time": stamp(finished + 5),
                "wal_file_name": name.split("_")[1],
                "storage_name": "default",
                "start_time": stamp(finished - 120),
                "finish_time": stamp(finished),
                "hostname": "db-1",
                "data_dir": "/var/lib/postgresql/15/main",
                "pg_version": 150004,
                "is_permanent": False,
            }
            for name, finished in backups
        ]
    )


def test_wal_g_full_backups_are_told_from_deltas(
    pg_database: PgDatabase, tmp_path: Path, tool: ToolMaker
) -> None:
    now = time.time()
    command = tool(
        _walg_list(
            ("base_000000010000000000000004", now - 30 * HOUR),
            ("base_000000010000000000000010_D_000000010000000000000004", now - HOUR),
        )
    )
    result = _backups(
        tmp_path,
        pg_database.dsn,
        wal_archiving="ignore",
        last_backup={"source": "wal-g", "max_age": "24h", "command": command},
    )
    assert result.status is Status.FAIL
    assert result.summary == "the last full backup is 30.0 h old (limit 24h)"
    assert (
        "last full backup: wal-g base_000000010000000000000004, 30.0 h ago (limit 24h)"
        in result.evidence
    )
    assert (tmp_path / "args").read_text().split() == ["backup-list", "--json", "--detail"]


def test_wal_g_listing_no_backup_fails(
    pg_database: PgDatabase, tmp_path: Path, tool: ToolMaker
) -> None:
    # wal-g prints nothing on stdout (and "No backups found" in its log) when there is none.
    result = _backups(
        tmp_path,
        pg_database.dsn,
        wal_archiving="ignore",
        last_backup={"source": "wal-g", "max_age": "24h", "command": tool("")},
    )
    assert result.status is Status.FAIL
    assert result.summary == "wal-g lists no full backup"


def test_a_backup_file_is_judged_by_its_modification_time(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    dump = tmp_path / "latest.dump"
    dump.write_bytes(b"PGDMP")
    os.utime(dump, (time.time() - 3 * HOUR, time.time() - 3 * HOUR))
    fresh = _backups(
        tmp_path,
        pg_database.dsn,
        last_backup={"source": "file", "path": "latest.dump", "max_age": "24h"},
    )
    # Archiving off on this server: said, and the backup decides.
    assert fresh.status is Status.PASS, fresh.summary
    assert "WAL archiving is off (archive_mode = off): not checked" in fresh.evidence
    stale = _backups(
        tmp_path,
        pg_database.dsn,
        last_backup={"source": "file", "path": "latest.dump", "max_age": "2h"},
    )
    assert stale.status is Status.FAIL
    assert stale.summary == "the last full backup is 3.0 h old (limit 2h)"
    missing = _backups(
        tmp_path,
        pg_database.dsn,
        last_backup={"source": "file", "path": "gone.dump", "max_age": "2h"},
    )
    assert missing.status is Status.FAIL
    assert missing.summary.endswith("gone.dump cannot be read: No such file or directory")


def test_the_tool_environment_secrets_appear_nowhere(
    pg_database: PgDatabase, tmp_path: Path, tool: ToolMaker
) -> None:
    secret = f"canary-{secrets.token_hex(8)}"
    script = tmp_path / "leaky"
    script.write_text(
        '#!/bin/sh\necho "ERROR: cannot reach s3 with key $AWS_SECRET_ACCESS_KEY"\nexit 1\n'
    )
    script.chmod(0o755)
    run = run_everywhere(
        tmp_path,
        "postgres.backups",
        {
            "dsn": pg_database.dsn,
            "wal_archiving": "ignore",
            "last_backup": {
                "source": "wal-g",
                "max_age": "24h",
                "command": [str(script)],
                "env": {"AWS_SECRET_ACCESS_KEY": secret},
            },
        },
    )
    assert run.result["status"] == "ERROR"
    assert "cannot reach s3 with key ***" in run.result["summary"]
    assert secret not in run.text


@pytest.mark.parametrize(
    ("last_backup", "said"),
    [
        ({"source": "file", "max_age": "24h"}, "source: file needs path"),
        (
            {"source": "wal-g", "max_age": "24h", "stanza": "main"},
            "stanza is for source: pgbackrest",
        ),
        ({"source": "pgbackrest", "max_age": "24h", "path": "x"}, "path is for source: file"),
        ({"source": "barman", "max_age": "24h"}, "source"),
    ],
)
def test_a_last_backup_that_cannot_work_is_refused_at_load(
    tmp_path: Path, last_backup: dict[str, Any], said: str
) -> None:
    from readycheck.errors import ProfileError
    from readycheck.profile import load_profile
    from tests.database_checks import write_check_profile

    path = write_check_profile(
        tmp_path,
        "postgres.backups",
        {"dsn": "postgresql://app@db.invalid/app", "last_backup": last_backup},
    )
    with pytest.raises(ProfileError) as raised:
        load_profile(path, environ={})
    assert said in str(raised.value)
