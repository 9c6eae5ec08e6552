"""redis.ping against a real redis-server (password required, an ACL user), and the faults:
refused, no password, wrong password, a server that never answers."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from readycheck.results import Status
from tests.database_checks import run_check, run_everywhere
from tests.servers.http import SilentServer
from tests.servers.process import free_tcp_port
from tests.servers.redis import RedisServer


def _ping(tmp_path: Path, url: str, **params: Any) -> Any:
    return run_check(tmp_path, "redis.ping", {"url": url, **params})


def _version(redis_server: RedisServer) -> str:
    with redis.Redis.from_url(redis_server.url(), socket_timeout=5) as client:
        return str(client.info("server")["redis_version"])


def test_a_healthy_redis_passes_with_version_role_latency_and_memory(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    version = _version(redis_server)
    result = _ping(tmp_path, redis_server.url(), expect_role="master", min_version="6.0")
    assert result.status is Status.PASS, result.summary
    assert result.summary.startswith(f"Redis {version} (master) answered PING in ")
    assert result.evidence[0] == f"Redis {version}, role master"
    assert result.evidence[1].startswith("PING round trip ")
    assert result.evidence[2].endswith("(no maxmemory set)")
    assert result.metrics["latency_ms"] > 0
    assert "used_memory_ratio" not in result.metrics  # no maxmemory: no ratio


def test_an_acl_user_url_passes(redis_server: RedisServer, tmp_path: Path) -> None:
    assert _ping(tmp_path, redis_server.url(username="app")).status is Status.PASS


def test_the_wrong_role_fails(redis_server: RedisServer, tmp_path: Path) -> None:
    result = _ping(tmp_path, redis_server.url(), expect_role="replica")
    assert result.status is Status.FAIL
    assert result.summary == "role master, expected replica"


def test_an_older_version_than_required_fails(redis_server: RedisServer, tmp_path: Path) -> None:
    version = _version(redis_server)
    result = _ping(tmp_path, redis_server.url(), min_version="99.1")
    assert result.status is Status.FAIL
    assert result.summary == f"Redis {version} is older than the required 99.1"


def test_a_ping_over_max_latency_fails(redis_server: RedisServer, tmp_path: Path) -> None:
    result = _ping(tmp_path, redis_server.url(), max_latency="0ms")
    assert result.status is Status.FAIL
    assert "over the 0s allowed" in result.summary


@pytest.fixture
def maxmemory(redis_server: RedisServer) -> Iterator[int]:
    """A maxmemory that the server's memory use is about 70% of; removed afterwards."""
    with redis.Redis.from_url(redis_server.url(), socket_timeout=5) as client:
        used = int(client.info("memory")["used_memory"])
        limit = int(used / 0.7)
        client.config_set("maxmemory", limit)
        try:
            yield limit
        finally:
            client.config_set("maxmemory", 0)


def test_memory_use_over_max_memory_usage_fails(
    redis_server: RedisServer, maxmemory: int, tmp_path: Path
) -> None:
    result = _ping(tmp_path, redis_server.url(), max_memory_usage=0.5)
    assert result.status is Status.FAIL
    assert result.summary.startswith("memory ")
    assert result.summary.endswith("of maxmemory, over 50%")
    assert 0.5 < result.metrics["used_memory_ratio"] <= 1.5
    relaxed = _ping(tmp_path, redis_server.url(), max_memory_usage=1.0)
    assert relaxed.status is Status.PASS, relaxed.summary


def test_a_refused_connection_fails(tmp_path: Path) -> None:
    port = free_tcp_port()
    result = _ping(tmp_path, f"redis://:pw@127.0.0.1:{port}/0")
    assert result.status is Status.FAIL
    assert result.summary == f"nothing is listening at 127.0.0.1:{port} (connection refused)"


def test_a_server_that_never_answers_fails_within_connect_timeout(tmp_path: Path) -> None:
    with SilentServer() as silent:
        started = time.monotonic()
        result = run_check(
            tmp_path,
            "redis.ping",
            {"url": f"redis://127.0.0.1:{silent.port}/0", "connect_timeout": "1s"},
            timeout="60s",
        )
        elapsed = time.monotonic() - started
    assert result.status is Status.FAIL
    assert result.summary == f"127.0.0.1:{silent.port} did not answer within 1s (connect_timeout)"
    assert elapsed < 30


def test_a_password_required_but_not_given_fails(redis_server: RedisServer, tmp_path: Path) -> None:
    result = _ping(tmp_path, redis_server.url(password=""))
    assert result.status is Status.FAIL
    assert result.summary == (
        f"authentication failed: 127.0.0.1:{redis_server.port} requires a password and the "
        "URL gives none"
    )


@pytest.mark.parametrize("username", [None, "app"])
def test_a_wrong_password_fails_and_shows_nowhere(
    redis_server: RedisServer, tmp_path: Path, username: str | None
) -> None:
    password = f"canary-{secrets.token_hex(8)}"
    run = run_everywhere(
        tmp_path,
        "redis.ping",
        {"url": "${env:REDIS_URL}"},
        environ={"REDIS_URL": redis_server.url(username=username, password=password)},
    )
    assert run.exit_code == 1
    assert run.result["status"] == "FAIL"
    assert run.result["summary"] == (
        f"authentication failed at 127.0.0.1:{redis_server.port}: wrong password (or user)"
    )
    assert password not in run.text


def test_a_url_that_does_not_parse_errors_without_showing_it(tmp_path: Path) -> None:
    password = f"canary-{secrets.token_hex(8)}"
    run = run_everywhere(
        tmp_path,
        "redis.ping",
        {"url": "${env:REDIS_URL}"},
        environ={"REDIS_URL": f"redis://:{password}@127.0.0.1:notaport/0"},
    )
    assert run.result["status"] == "ERROR"
    assert run.result["summary"] == "the Redis URL does not parse"
    assert password not in run.text
