"""postgres.pool's count on a real server with real sessions: readycheck's own never
counted, the application's counted as its deploy will (rolling or replace), and the same
verdict run after run while sibling checks and the application's connections come and go."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from readycheck.checks.postgres.dsn import PostgresDsn
from readycheck.checks.postgres.session import Session, open_session
from readycheck.context import Context
from readycheck.engine import Engine
from readycheck.profile import load_profile
from readycheck.redact import Redactor
from readycheck.results import CheckResult, Status
from readycheck.units import Duration, counted
from tests.conftest import CliResult
from tests.database_checks import run_check
from tests.servers.postgres import PgDatabase, PostgresServer

APP = "billing-api"


@contextlib.contextmanager
def sessions(
    dsn: str, count: int, application_name: str | None = None
) -> Iterator[list[psycopg.Connection[tuple[Any, ...]]]]:
    """``count`` connections held open, named ``application_name``."""
    named = {"application_name": application_name} if application_name is not None else {}
    held = [psycopg.connect(dsn, autocommit=True, connect_timeout=5, **named) for _ in range(count)]
    try:
        yield held
    finally:
        for connection in held:
            connection.close()


@contextlib.contextmanager
def readycheck_sessions(dsn: str, count: int, tmp_path: Path) -> Iterator[list[Session]]:
    """Sessions opened exactly as readycheck's checks open theirs, held on a loop thread
    of their own (a sibling check's, as the pool check sees it)."""
    loop = asyncio.new_event_loop()
    context = Context(
        check_id="sibling",
        environment=None,
        base_dir=tmp_path,
        redactor=Redactor(),
        logger=logging.getLogger("readycheck.test"),
        deadline=time.monotonic() + 60,
    )

    async def open_all() -> list[Session]:
        return [await open_session(PostgresDsn(dsn), Duration("5s"), context) for _ in range(count)]

    async def close_all() -> None:
        await asyncio.gather(*(session.close() for session in held))

    held = loop.run_until_complete(open_all())
    try:
        yield held
    finally:
        loop.run_until_complete(close_all())
        loop.close()


def _pool(tmp_path: Path, dsn: str, **params: Any) -> CheckResult:
    return run_check(tmp_path, "postgres.pool", {"dsn": dsn, **params})


def _baseline(tmp_path: Path, dsn: str, **params: Any) -> CheckResult:
    """A run with the smallest pool: what the server holds, sorted, and what is allowed."""
    return _pool(tmp_path, dsn, pool_size=1, max_overflow=0, **params)


def test_readycheck_sessions_are_never_counted_even_as_another_role(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    before = _baseline(tmp_path, pg_database.dsn)
    with (
        readycheck_sessions(pg_database.dsn, 3, tmp_path),
        # A role whose sessions the check's role sees without their type or state: their
        # application_name is still visible, and is readycheck's.
        sessions(pg_database.superuser_dsn, 2, "readycheck"),
    ):
        during = _baseline(tmp_path, pg_database.dsn)
    assert during.metrics["readycheck_sessions"] == before.metrics["readycheck_sessions"] + 5
    for metric in ("other_sessions", "backends", "headroom"):
        assert during.metrics[metric] == before.metrics[metric], metric
    assert during.status is before.status is Status.PASS
    line = next(line for line in during.evidence if line.startswith("readycheck's own"))
    assert line == (
        "readycheck's own sessions, not counted: 6 (this check's and those of the checks "
        "beside it, application_name readycheck)"
    )


def test_the_verdict_is_the_same_every_run_while_siblings_and_the_app_come_and_go(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    application = {"application_name": APP}
    with sessions(pg_database.dsn, 4, APP):
        first = _baseline(tmp_path, pg_database.dsn, application=application)
        assert first.metrics["application_sessions"] == 4
        # A pool that fills what is allowed exactly: one session more counted would fail.
        room = int(first.metrics["allowed"] - first.metrics["other_sessions"] - 4)
        profile = _profile_with_siblings(
            tmp_path,
            pg_database.dsn,
            {"pool_size": room, "max_overflow": 0, "application": application},
            siblings=6,
        )
        runs = []
        for siblings in (0, 3, 8, 1, 5):
            with readycheck_sessions(pg_database.dsn, siblings, tmp_path):
                runs.append(asyncio.run(Engine(profile).run()))
    pools = [next(c for c in run.checks if c.id == "pool") for run in runs]
    assert [pool.status for pool in pools] == [Status.PASS] * 5, [p.summary for p in pools]
    assert {pool.metrics["headroom"] for pool in pools} == {0}
    assert {pool.summary for pool in pools} == {pools[0].summary}
    # The siblings did run beside it, and were seen (and left out) by the pool check.
    assert all(check.status is Status.PASS for run in runs for check in run.checks)
    assert max(pool.metrics["readycheck_sessions"] for pool in pools) >= 9


def _profile_with_siblings(
    directory: Path, dsn: str, params: dict[str, Any], *, siblings: int
) -> Any:
    checks: list[dict[str, Any]] = [
        {"id": "pool", "type": "postgres.pool", "with": {"dsn": dsn, **params}}
    ]
    checks += [
        {"id": f"db-{n}", "type": "postgres.connectivity", "with": {"dsn": dsn}}
        for n in range(siblings)
    ]
    path = directory / "siblings.yaml"
    path.write_text(yaml.safe_dump({"name": "siblings", "checks": checks}, sort_keys=False))
    return load_profile(path, environ={})


def test_a_rolling_deploy_counts_the_application_s_current_sessions_and_replace_does_not(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    application = {"application_name": APP}
    with sessions(pg_database.dsn, 5, APP):
        base = _baseline(tmp_path, pg_database.dsn, application=application)
        # Fits only if the application's 5 current sessions give their place to the new.
        room = int(base.metrics["allowed"] - base.metrics["other_sessions"] - 2)
        params = {"pool_size": room, "max_overflow": 0, "application": application}
        rolling = _pool(tmp_path, pg_database.dsn, **params, deploy="rolling")
        replace = _pool(tmp_path, pg_database.dsn, **params, deploy="replace")
    other = int(base.metrics["other_sessions"])
    allowed = int(base.metrics["allowed"])

    assert rolling.status is Status.FAIL
    assert rolling.metrics["headroom"] == -3
    assert rolling.summary == (
        f"{counted(other, 'other session')} + 5 of the application's now (deploy rolling) + {room} "
        f"required exceed the {allowed} allowed (80% of {base.metrics['usable']:g} usable "
        "connections) by 3"
    )
    assert "the application's current sessions (application_name billing-api): 5" in (
        rolling.evidence
    )
    assert "say deploy: replace" in (rolling.remediation or "")

    assert replace.status is Status.PASS, replace.summary
    assert replace.metrics["headroom"] == 2
    assert replace.metrics["application_sessions"] == 5
    assert replace.evidence[3:6] == [
        f"other sessions: {other}",
        "the application's current sessions (application_name billing-api): 5, not counted: "
        "deploy replace, the new pools take their place",
        f"required: the application's pools may open ({room} + 0) x 1 worker = {room}",
    ]
    assert replace.evidence[6] == (
        f"{counted(other, 'other session')} + {room} required = {other + room} of {allowed} allowed: "
        "headroom 2"
    )


def test_without_the_application_named_every_session_is_counted_and_the_evidence_says_so(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    with sessions(pg_database.dsn, 5, APP):
        named = _baseline(tmp_path, pg_database.dsn, application={"application_name": APP})
        unnamed = _baseline(tmp_path, pg_database.dsn)
    # Today's conservative sum: the same as a rolling deploy's.
    assert unnamed.metrics["backends"] == named.metrics["backends"]
    assert unnamed.metrics["other_sessions"] == named.metrics["other_sessions"] + 5
    assert "application_sessions" not in unnamed.metrics
    line = next(line for line in unnamed.evidence if line.startswith("other sessions:"))
    assert line == (
        f"other sessions: {unnamed.metrics['other_sessions']:g}, 5 of them on database "
        f"{pg_database.name}: some may be the application's own, counted here as in a rolling "
        "deploy (name them with application: to count them by the deploy)"
    )


@pytest.fixture
def billing_role(postgres_server: PostgresServer, pg_database: PgDatabase) -> Iterator[str]:
    """A role of the application's own; yields a DSN connecting as it."""
    role = f"billing_{secrets.token_hex(3)}"
    password = secrets.token_hex(8)
    postgres_server.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
    try:
        yield postgres_server.dsn(user=role, password=password, dbname=pg_database.name)
    finally:
        postgres_server.execute(
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {}"
            ).format(sql.Literal(role))
        )
        postgres_server.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_application_is_named_by_user_by_a_list_or_by_both_at_once(
    pg_database: PgDatabase, billing_role: str, tmp_path: Path
) -> None:
    user = str(psycopg.conninfo.conninfo_to_dict(billing_role)["user"])
    with (
        sessions(billing_role, 2, "billing-worker"),
        sessions(billing_role, 3, APP),
        sessions(pg_database.dsn, 4, APP),
    ):
        by_user = _baseline(tmp_path, pg_database.dsn, application={"user": user})
        by_names = _baseline(
            tmp_path,
            pg_database.dsn,
            application={"application_name": [APP, "billing-worker"]},
        )
        by_both = _baseline(
            tmp_path, pg_database.dsn, application={"application_name": APP, "user": user}
        )
    assert by_user.metrics["application_sessions"] == 5
    assert by_names.metrics["application_sessions"] == 9
    assert by_both.metrics["application_sessions"] == 3
    assert (
        f"the application's current sessions (application_name {APP} and user {user}): 3"
        in by_both.evidence
    )
    # Whatever is named the application's, the total seen is the same.
    totals = {
        r.metrics["other_sessions"] + r.metrics["application_sessions"]
        for r in (by_user, by_names, by_both)
    }
    assert len(totals) == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            "deploy: replace",
            "deploy: replace leaves the application's current sessions out of the count: "
            "say which they are with application: {application_name: ...} or {user: ...}",
        ),
        ("application: {}", "name the application's sessions by application_name or user"),
        (
            "application: {application_name: readycheck}",
            "readycheck is readycheck's own application_name",
        ),
        ("deploy: blue-green", "deploy"),
        ("application: {name: api}", "unknown key 'name'"),
    ],
)
def test_a_deploy_mode_or_application_that_cannot_work_is_a_profile_error(
    cli: Callable[..., CliResult],
    write_profile: Callable[..., Path],
    params: str,
    message: str,
) -> None:
    path = write_profile(
        f"""
        checks:
          - id: pool
            type: postgres.pool
            with:
              dsn: postgresql://app:pw@db.invalid/app
              pool_size: 5
              {params}
        """
    )
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert "profile.yaml:" in result.output
    assert message in result.output
