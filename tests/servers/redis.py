"""A throwaway Redis server for tests: the server is readycheck.demo.redis.RedisServer
(loopback, a password required, an ACL user ``app``; read its docstring for which binary
it runs), shared by the whole session.

Fixture ``redis_server`` (session): one server, stopped and its temp dir removed at
session end or interpreter exit.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from readycheck.demo.redis import ACL_USER, HOST, RedisServer

__all__ = ["ACL_USER", "HOST", "RedisServer", "redis_server", "shared_redis_server"]

_running: RedisServer | None = None


def shared_redis_server() -> RedisServer:
    """The run's one server, started on first use (see shared_postgres_server for why)."""
    global _running
    if _running is None or not _running.process.is_running():
        _running = RedisServer.start(label="test")
    return _running


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = shared_redis_server()
    yield server
    server.stop()
