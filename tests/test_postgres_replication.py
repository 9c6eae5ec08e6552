"""postgres.replication against a real primary and streaming standbys (pg_basebackup -R):
standbys connected and within budget, a standby that disconnects, replay held back,
an inactive slot keeping WAL, and a role that may not read replication state."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from readycheck.checks.postgres.replication import Findings, ReplicationParams, _primary
from readycheck.results import Status
from tests.database_checks import run_check
from tests.servers.postgres import PgDatabase, PostgresServer

Dsn = Callable[[PostgresServer], str]


@dataclass(frozen=True)
class Standby:
    server: PostgresServer
    name: str
    """Its application_name in pg_stat_replication (its cluster_name)."""


@pytest.fixture(scope="module")
def monitor(postgres_server: PostgresServer) -> Iterator[Dsn]:
    """A login role in pg_monitor (what a monitoring user is given): a DSN maker for any
    server of the cluster (standbys have the role too, once replayed)."""
    role = f"monitor_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    postgres_server.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pg_monitor").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
    yield lambda server: server.dsn(user=role, password=password, dbname="postgres")
    postgres_server.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def standby(postgres_server: PostgresServer, monitor: Dsn) -> Iterator[Standby]:
    """A standby of its own, named in pg_stat_replication by its cluster_name."""
    name = f"standby-{secrets.token_hex(3)}"
    replica = postgres_server.start_replica(label="test", settings={"cluster_name": name})
    try:
        _wait_until(lambda: _streaming(postgres_server, name), "the standby never streamed")
        _wait_until(lambda: _answers(monitor(replica)), "the monitoring role never reached it")
        yield Standby(replica, name)
    finally:
        replica.stop()


def _streaming(primary: PostgresServer, name: str) -> bool:
    rows = primary.execute(
        "SELECT 1 FROM pg_stat_replication WHERE application_name = %s AND state = 'streaming'",
        (name,),
    )
    return bool(rows)


def _receiving(replica: PostgresServer) -> bool:
    rows = replica.execute("SELECT status FROM pg_stat_wal_receiver")
    return bool(rows) and rows[0][0] == "streaming"


def _answers(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _wait_until(condition: Callable[[], bool], message: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def _replication(tmp_path: Path, dsn: str, **params: Any) -> Any:
    return run_check(tmp_path, "postgres.replication", {"dsn": dsn, **params})


# -- on the primary ----------------------------------------------------------------------


def test_a_primary_with_its_standby_streaming_passes(
    postgres_server: PostgresServer, standby: Standby, monitor: Dsn, tmp_path: Path
) -> None:
    name = standby.name
    result = _replication(tmp_path, monitor(postgres_server), replicas=[name], role="primary")
    assert result.status is Status.PASS, result.summary
    assert re.search(
        r"^1 standby streaming within budget$|standbys streaming within budget$", result.summary
    )
    assert "role: primary" in result.evidence
    assert any(
        line.startswith(f"standby {name} (127.0.0.1, async): streaming, ")
        for line in result.evidence
    ), result.evidence
    assert result.metrics["streaming"] >= 1


def test_a_named_standby_that_is_not_connected_fails(
    postgres_server: PostgresServer, monitor: Dsn, tmp_path: Path
) -> None:
    result = _replication(
        tmp_path, monitor(postgres_server), replicas=["billing-replica"], min_replicas=0
    )
    assert result.status is Status.FAIL
    assert result.summary == "standby billing-replica is not connected"
    assert "primary_conninfo" in (result.remediation or "")


def test_a_standby_caught_leaving_mid_check_is_not_streaming() -> None:
    # The one snapshot of pg_stat_replication the check reads, taken as a standby's
    # walsender ends: its row is there, stopping, without positions.
    class Snapshot:
        async def fetch(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
            assert "FROM pg_stat_replication" in query
            return [("billing", "stopping", "10.0.0.5", "async", None, None)]

    params = ReplicationParams.model_validate(
        {"dsn": "postgresql://monitor@db.invalid/postgres", "replicas": ["billing"]}
    )
    found = Findings([], [], {}, [])
    asyncio.run(_primary(params, Snapshot(), found))  # type: ignore[arg-type]
    assert found.evidence == ["standby billing (10.0.0.5): stopping"]
    assert found.problems == [
        "standby billing is stopping, not streaming",
        "0 standbys streaming, at least 1 expected",
    ]
    assert "primary_conninfo" in found.remedies[0]
    assert found.metrics["streaming"] == 0


def test_fewer_standbys_than_min_replicas_fail(
    postgres_server: PostgresServer, monitor: Dsn, tmp_path: Path
) -> None:
    result = _replication(tmp_path, monitor(postgres_server), min_replicas=50)
    assert result.status is Status.FAIL
    assert re.fullmatch(
        r"(0 standbys|1 standby|\d+ standbys) streaming, at least 50 expected", result.summary
    )


def test_a_standby_that_disconnects_is_reported_on_both_sides(
    postgres_server: PostgresServer, standby: Standby, monitor: Dsn, tmp_path: Path
) -> None:
    name = standby.name
    assert _replication(tmp_path, monitor(standby.server)).status is Status.PASS
    # The standby loses its way to the primary (PostgreSQL 13+ applies this on reload).
    standby.server.execute("ALTER SYSTEM SET primary_conninfo = ''")
    standby.server.execute("SELECT pg_reload_conf()")
    _wait_until(lambda: not _streaming(postgres_server, name), "the walsender never ended")
    on_primary = _replication(tmp_path, monitor(postgres_server), replicas=[name], min_replicas=0)
    assert on_primary.status is Status.FAIL
    assert on_primary.summary == f"standby {name} is not connected"
    on_standby = _replication(tmp_path, monitor(standby.server))
    assert on_standby.status is Status.FAIL
    assert on_standby.summary == (
        "the WAL receiver is not running: the standby receives nothing from the primary"
    )


def test_replay_held_back_fails_on_lag_budgets(
    postgres_server: PostgresServer,
    standby: Standby,
    pg_database: PgDatabase,
    monitor: Dsn,
    tmp_path: Path,
) -> None:
    name = standby.name
    standby.server.execute("SELECT pg_wal_replay_pause()")
    try:
        received = standby.server.execute("SELECT pg_last_wal_receive_lsn()")[0][0]
        pg_database.execute("CREATE TABLE filler AS SELECT generate_series(1, 2000) AS n")
        _wait_until(
            lambda: standby.server.execute(
                "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), %s::pg_lsn) > 0",
                (str(received),),
            )[0][0],
            "the standby never received the new WAL",
        )
        on_primary = _replication(
            tmp_path, monitor(postgres_server), replicas=[name], max_lag_bytes="1kB"
        )
        on_standby = _replication(tmp_path, monitor(standby.server), max_lag_bytes="1kB")
    finally:
        standby.server.execute("SELECT pg_wal_replay_resume()")
    assert on_primary.status is Status.FAIL
    assert any(
        problem.startswith(f"standby {name} is ") and problem.endswith("of WAL behind (limit 1KB)")
        for problem in on_primary.evidence
    ), on_primary.evidence
    assert on_standby.status is Status.FAIL
    assert "replay is paused (pg_wal_replay_pause())" in on_standby.evidence
    assert any(
        line.endswith("received and not replayed (limit 1KB)") for line in on_standby.evidence
    )
    assert on_standby.metrics["lag_bytes"] > 1000


def test_replay_behind_for_longer_than_max_replay_lag_fails_on_the_standby(
    postgres_server: PostgresServer,
    standby: Standby,
    pg_database: PgDatabase,
    monitor: Dsn,
    tmp_path: Path,
) -> None:
    # A transaction the standby has replayed, then one it holds back: replay is behind by
    # the time since the first committed, whatever the bytes.
    pg_database.execute("CREATE TABLE replayed (n int)")
    position = postgres_server.execute("SELECT pg_current_wal_lsn()")[0][0]
    _wait_until(
        lambda: standby.server.execute(
            "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (str(position),)
        )[0][0],
        "the standby never replayed the first transaction",
    )
    standby.server.execute("SELECT pg_wal_replay_pause()")
    try:
        pg_database.execute("CREATE TABLE held_back (n int)")
        _wait_until(
            lambda: standby.server.execute(
                "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()"
                " AND now() - pg_last_xact_replay_timestamp() > interval '1.1 s'"
            )[0][0],
            "the standby never fell 1s behind",
        )
        result = _replication(
            tmp_path, monitor(standby.server), max_replay_lag="1s", max_lag_bytes="1GB"
        )
    finally:
        standby.server.execute("SELECT pg_wal_replay_resume()")
    assert result.status is Status.FAIL
    assert any(
        line.startswith("replay is ") and line.endswith(" behind (limit 1s)")
        for line in result.evidence
    ), result.evidence
    assert result.metrics["replay_delay_ms"] > 1000


def test_an_inactive_slot_keeping_wal_over_budget_fails(
    postgres_server: PostgresServer, pg_database: PgDatabase, monitor: Dsn, tmp_path: Path
) -> None:
    slot = f"forgotten_{secrets.token_hex(3)}"
    postgres_server.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
    try:
        pg_database.execute("CREATE TABLE filler AS SELECT generate_series(1, 2000) AS n")
        result = _replication(
            tmp_path, monitor(postgres_server), min_replicas=0, max_inactive_slot_wal="1kB"
        )
        roomy = _replication(tmp_path, monitor(postgres_server), min_replicas=0)
    finally:
        postgres_server.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    assert result.status is Status.FAIL
    assert any(
        line.startswith(f"inactive physical slot {slot} keeps ") and line.endswith("(limit 1KB)")
        for line in result.evidence
    ), result.evidence
    assert "pg_drop_replication_slot" in (result.remediation or "")
    assert roomy.status is Status.PASS, roomy.summary
    assert any(
        line.startswith(f"physical slot {slot}: inactive, keeps ") for line in roomy.evidence
    )


# -- on a standby ------------------------------------------------------------------------


def test_a_standby_receiving_and_replaying_passes(
    postgres_replica: PostgresServer, monitor: Dsn, tmp_path: Path
) -> None:
    _wait_until(lambda: _answers(monitor(postgres_replica)), "the role never reached the standby")
    # The run's shared standby: a WAL receiver that some earlier event (a walsender ended on
    # the primary) made restart comes back within wal_retrieve_retry_interval (5 s).
    try:
        _wait_until(lambda: _receiving(postgres_replica), "the WAL receiver never streamed")
    except AssertionError:  # say what the standby saw, for whoever meets this
        receiver = postgres_replica.execute("SELECT status, sender_port FROM pg_stat_wal_receiver")
        log = (postgres_replica.root / "postgres.log").read_text(errors="replace")[-2000:]
        raise AssertionError(f"the WAL receiver never streamed: {receiver}\n{log}") from None
    result = _replication(tmp_path, monitor(postgres_replica), role="standby")
    assert result.status is Status.PASS, result.summary
    assert result.summary == "standby receiving and replaying within budget"
    assert any(line.startswith("receiving from 127.0.0.1:") for line in result.evidence)


def test_a_server_in_the_other_role_fails(
    postgres_server: PostgresServer, monitor: Dsn, tmp_path: Path
) -> None:
    result = _replication(tmp_path, monitor(postgres_server), role="standby")
    assert result.status is Status.FAIL
    assert result.summary == "the server is a primary, not the standby this check expects"


def test_a_role_without_pg_monitor_is_told_what_to_grant(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = _replication(tmp_path, pg_database.dsn)
    assert result.status is Status.ERROR
    assert result.summary == "role app may not read other sessions' replication state"
    assert (result.remediation or "").startswith("GRANT pg_monitor TO app;")
