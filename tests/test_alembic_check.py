"""alembic.head (and what alembic.safety shares with it) against a real database migrated with Alembic, and the test scripts folders
(linear 0001 -> 0002 -> 0003, and a branch into two heads)."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from readycheck.engine import Engine
from readycheck.profile import load_profile
from readycheck.results import Status
from tests.conftest import CliResult
from tests.database_checks import run_check, run_everywhere, write_check_profile
from tests.servers.alembic_migrations import (
    SCRIPTS,
    branched_scripts,
    copy_scripts,
    downgrade,
    upgrade,
)
from tests.servers.postgres import PgDatabase


def _head(tmp_path: Path, database: PgDatabase, scripts: Path = SCRIPTS, **params: Any) -> Any:
    return run_check(
        tmp_path,
        "alembic.head",
        {"dsn": database.dsn, "script_location": str(scripts), **params},
    )


def test_a_database_at_head_passes(pg_database: PgDatabase, tmp_path: Path) -> None:
    upgrade(pg_database.dsn, "heads")
    result = _head(tmp_path, pg_database)
    assert result.status is Status.PASS, result.summary
    assert result.summary == "database at head 0003"
    assert result.evidence == [
        "database at 0003 (index orders.account_id)",
        "scripts head: 0003 (index orders.account_id)",
    ]
    assert result.metrics["pending"] == 0


def test_pending_migrations_are_listed_in_apply_order(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    upgrade(pg_database.dsn, "0001")
    result = _head(tmp_path, pg_database)
    assert result.status is Status.FAIL
    assert result.summary == (
        "2 revisions pending: 0002 (create table orders), 0003 (index orders.account_id)"
    )
    assert result.evidence[0] == "database at 0001 (create table accounts)"
    assert result.evidence[-1] == (
        "pending, in apply order: 0002 (create table orders), 0003 (index orders.account_id)"
    )
    assert result.metrics["pending"] == 2
    assert "alembic upgrade head" in (result.remediation or "")


def test_a_database_without_a_version_table_fails(pg_database: PgDatabase, tmp_path: Path) -> None:
    result = _head(tmp_path, pg_database)
    assert result.status is Status.FAIL
    assert result.summary == (
        "no version table alembic_version: the database has never been migrated "
        "(3 revisions pending)"
    )
    assert result.metrics["pending"] == 3


def test_a_database_downgraded_to_base_has_everything_pending(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    upgrade(pg_database.dsn, "heads")
    downgrade(pg_database.dsn, "base")
    result = _head(tmp_path, pg_database)
    assert result.status is Status.FAIL
    assert result.evidence[0] == "database at base (no revision)"
    assert result.metrics["pending"] == 3


def test_several_heads_fail_unless_allowed(pg_database: PgDatabase, tmp_path: Path) -> None:
    scripts = branched_scripts(tmp_path / "branched")
    upgrade(pg_database.dsn, "heads", script_location=scripts)
    result = _head(tmp_path, pg_database, scripts)
    assert result.status is Status.FAIL
    assert result.summary.startswith("the scripts have 2 heads: 0003")
    assert "alembic merge heads" in (result.remediation or "")
    allowed = _head(tmp_path, pg_database, scripts, allow_multiple_heads=True)
    assert allowed.status is Status.PASS, allowed.summary
    assert allowed.summary == "database at heads 0003a, 0003b"


def test_a_database_on_one_branch_has_the_other_pending(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = branched_scripts(tmp_path / "branched")
    upgrade(pg_database.dsn, "0003a", script_location=scripts)
    result = _head(tmp_path, pg_database, scripts, allow_multiple_heads=True)
    assert result.status is Status.FAIL
    assert result.summary == (
        "1 revision pending: 0003b (create table audit_log (one of two heads on top of 0002))"
    )


def test_a_database_ahead_of_the_scripts_fails(pg_database: PgDatabase, tmp_path: Path) -> None:
    upgrade(pg_database.dsn, "heads")
    older = copy_scripts(tmp_path / "older")
    for revision in (older / "versions").glob("0003_*.py"):
        revision.unlink()
    result = _head(tmp_path, pg_database, older)
    assert result.status is Status.FAIL
    assert result.summary == (
        "the database is at 0003, which these scripts do not know: the database is ahead "
        "of this code (or on another branch)"
    )
    assert "pending" not in result.metrics  # unknowable from a revision the scripts lack


def test_a_locked_version_table_ends_within_the_timeout_saying_so(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    upgrade(pg_database.dsn, "heads")
    # What a migration in progress does: hold the version table in a transaction.
    with psycopg.connect(pg_database.dsn, application_name="alembic-upgrade") as migration:
        migration.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
        pid = migration.info.backend_pid
        started = time.monotonic()
        result = run_check(
            tmp_path,
            "alembic.head",
            {"dsn": pg_database.dsn, "script_location": str(SCRIPTS)},
            timeout="4s",
        )
        elapsed = time.monotonic() - started
        migration.rollback()
    assert result.status is Status.ERROR
    assert result.summary.startswith(
        "the version table alembic_version is locked by another session (waited "
    )
    assert result.summary.endswith("): a migration is probably running")
    assert result.evidence[0].startswith(
        f"pid {pid} holds AccessExclusiveLock, application alembic-upgrade"
    )
    assert elapsed < 4 + 2  # within the check's timeout (plus the engine's grace), not hung


def test_the_version_table_can_live_in_another_schema(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    pg_database.execute("CREATE SCHEMA meta")
    pg_database.execute("CREATE TABLE meta.versions (version_num varchar(32) PRIMARY KEY)")
    pg_database.execute("INSERT INTO meta.versions VALUES ('0003')")
    found = _head(tmp_path, pg_database, version_table="versions", version_table_schema="meta")
    assert found.status is Status.PASS, found.summary
    not_on_path = _head(tmp_path, pg_database, version_table="versions")
    assert not_on_path.status is Status.FAIL
    assert not_on_path.summary.startswith("no version table versions:")


def test_env_py_is_never_run(pg_database: PgDatabase, tmp_path: Path) -> None:
    upgrade(pg_database.dsn, "heads")
    scripts = copy_scripts(tmp_path / "scripts")
    marker = tmp_path / "env-py-ran"
    (scripts / "env.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "raise SystemExit('env.py must not run')\n"
    )
    result = _head(tmp_path, pg_database, scripts)
    assert result.status is Status.PASS, result.summary
    assert not marker.exists()


def test_an_alembic_ini_is_read_relative_to_its_own_folder(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    upgrade(pg_database.dsn, "heads")
    project = tmp_path / "project"
    scripts = copy_scripts(project / "migrations")
    # A revision that imports the application, found through prepend_sys_path = .
    module = f"app_models_{secrets.token_hex(4)}"
    (project / f"{module}.py").write_text("TABLE = 'orders'\n")
    first = next((scripts / "versions").glob("0001_*.py"))
    first.write_text(first.read_text() + f"\nimport {module}  # noqa: E402\n")
    (project / "alembic.ini").write_text(
        "[alembic]\nscript_location = migrations\nprepend_sys_path = .\npath_separator = os\n"
    )
    path_before = list(sys.path)
    result = run_check(
        tmp_path,
        "alembic.head",
        {"dsn": pg_database.dsn, "config": "project/alembic.ini"},
    )
    assert result.status is Status.PASS, result.summary
    assert sys.path == path_before
    sys.modules.pop(module, None)


def test_scripts_that_cannot_be_read_are_an_error(pg_database: PgDatabase, tmp_path: Path) -> None:
    scripts = copy_scripts(tmp_path / "scripts")
    broken = next((scripts / "versions").glob("0002_*.py"))
    broken.write_text(broken.read_text() + "\ndef oops(:\n")
    result = _head(tmp_path, pg_database, scripts)
    assert result.status is Status.ERROR
    assert result.summary.startswith("the scripts in ")
    assert "cannot be read: SyntaxError" in result.summary


@pytest.mark.parametrize(
    ("params", "files", "message"),
    [
        (
            "script_location: migrations",
            {},
            "migrations does not exist: name the "
            "Alembic scripts folder (the one holding env.py and versions/), relative to the "
            "profile's folder",
        ),
        (
            "script_location: migrations",
            {"migrations": "not a folder\n"},
            "migrations is a file, not a folder",
        ),
        ("config: alembic.ini", {}, "alembic.ini does not exist"),
        (
            "config: alembic.ini",
            {"alembic.ini": "[alembic]\nscript_location = nowhere\n"},
            "alembic.ini names script_location nowhere, which is not a folder (relative to "
            "the ini's folder)",
        ),
        (
            "config: alembic.ini",
            {"alembic.ini": "[alembic]\nsqlalchemy.url = postgresql://u:hunter22@db/app\n"},
            "alembic.ini has no script_location in its [alembic] section",
        ),
        (
            "config: alembic.ini",
            {"alembic.ini": "sqlalchemy.url = postgresql://u:hunter22@db/app\n"},
            "alembic.ini cannot be read as an ini file with an [alembic] section",
        ),
    ],
    ids=["no-folder", "a-file", "no-ini", "ini-names-nowhere", "ini-without-it", "not-an-ini"],
)
@pytest.mark.parametrize("check_type", ["alembic.head", "alembic.safety"])
def test_scripts_that_name_nothing_are_a_profile_error_at_validate(
    cli: Callable[..., CliResult],
    write_profile: Callable[..., Path],
    tmp_path: Path,
    params: str,
    files: dict[str, str],
    message: str,
    check_type: str,
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    path = write_profile(
        f"""
        checks:
          - id: migrations
            type: {check_type}
            with:
              dsn: postgresql://app:pw@db.invalid/app
              {params}
        """
    )
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    key = params.split(":")[0]
    column = len(f"      {key}: ") + 1  # the value's
    assert f"profile.yaml:6:{column}: checks[migrations].with.{key}: {message}" in result.output
    assert "hunter22" not in result.output


def test_both_a_scripts_folder_and_an_ini_is_a_profile_error(
    cli: Callable[..., CliResult], write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    copy_scripts(tmp_path / "migrations")
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    path = write_profile(
        "checks:\n  - id: m\n    type: alembic.head\n    with: {dsn: 'postgresql://db.invalid/a',"
        " script_location: migrations, config: alembic.ini}\n"
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert "give either script_location (a scripts folder) or config (an alembic.ini)" in (
        result.output
    )


def test_a_relative_script_location_is_taken_from_the_profile_folder(
    cli: Callable[..., CliResult], write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    copy_scripts(tmp_path / "deploy" / "migrations")
    path = write_profile(
        "checks:\n  - id: m\n    type: alembic.head\n"
        "    with: {dsn: 'postgresql://app:pw@db.invalid/app', script_location: migrations}\n",
        name="deploy/profile.yaml",
    )
    assert cli("validate", path).exit_code == 0


def test_a_scripts_folder_removed_after_loading_is_an_error_when_the_check_runs(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = copy_scripts(tmp_path / "scripts")
    profile = load_profile(
        write_check_profile(
            tmp_path, "alembic.head", {"dsn": pg_database.dsn, "script_location": "scripts"}
        ),
        environ={},
    )
    shutil.rmtree(scripts)
    result = asyncio.run(Engine(profile).run()).checks[0]
    assert result.status is Status.ERROR
    assert result.summary == "scripts is not a folder (script_location)"


@pytest.mark.parametrize("check_type", ["alembic.head", "alembic.safety"])
def test_the_dsn_password_shows_nowhere_when_authentication_fails(
    pg_database: PgDatabase, tmp_path: Path, check_type: str
) -> None:
    password = f"canary-{secrets.token_hex(8)}"
    dsn = pg_database.server.dsn(password=password, dbname=pg_database.name)
    shutil.copytree(SCRIPTS, tmp_path / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    run = run_everywhere(
        tmp_path,
        check_type,
        {"dsn": "${env:DATABASE_URL}", "script_location": "migrations"},
        environ={"DATABASE_URL": dsn},
    )
    # alembic.head's question is the database's state; alembic.safety only weighs the
    # migrations by it, so without it the check could not work.
    assert run.result["status"] == ("ERROR" if check_type == "alembic.safety" else "FAIL")
    assert run.result["summary"].startswith("authentication failed for user app")
    assert password not in run.text
