"""Throwaway PostgreSQL clusters for tests: a real server on loopback, password
authentication, and a fresh database per test.

Fixtures:

- ``postgres_server`` (session): one cluster for the whole run, initialised in a temp dir,
  listening on 127.0.0.1 on a free port, scram-sha-256 for every connection. Roles:
  ``postgres`` (superuser, for setup) and ``app`` (plain login role) that owns database
  ``app``. Passwords are random per run, so a test can assert that one never shows up in
  output. Stopped, and its temp dir removed, at session end or interpreter exit.
- ``pg_database`` (function): a database of its own for one test, owned by ``app``, dropped
  afterwards with its connections terminated.

Server binaries, first found wins: ``$READYCHECK_TEST_PG_BINDIR``; the newest Debian
``/usr/lib/postgresql/<major>/bin``; the ones the ``pgserver`` wheel bundles (PostgreSQL 16);
``postgres`` on PATH. Read ``server_version_num`` rather than assuming a major version.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import secrets
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString, TypeAlias
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg import sql
from psycopg.abc import Params

from tests.servers.process import (
    Account,
    ServerProcess,
    ServerStartError,
    private_temp_dir,
    reachable_by,
    run_tool,
    start_on_free_port,
    unprivileged_account,
)

HOST = "127.0.0.1"
SUPERUSER = "postgres"
APP_USER = "app"
APP_DATABASE = "app"
DEBIAN_INSTALLATIONS = Path("/usr/lib/postgresql")

# What Cursor.execute takes with parameters (psycopg.abc.QueryNoTemplate exists from 3.3 on).
Statement: TypeAlias = LiteralString | bytes | sql.SQL | sql.Composed

# Durability buys nothing in a cluster that is deleted after the run; these settings make
# start-up, CREATE DATABASE and DDL fast. The rest keep the server small and predictable.
_SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "huge_pages": "off",
    "jit": "off",
    "logging_collector": "off",
}


def find_postgres_bindir() -> Path:
    """The directory holding initdb and postgres; see the module docstring for the order."""
    override = os.environ.get("READYCHECK_TEST_PG_BINDIR")
    if override:
        if not (Path(override) / "postgres").is_file():
            raise ServerStartError(f"READYCHECK_TEST_PG_BINDIR={override} has no postgres")
        return Path(override)
    debian = [
        path.parent
        for path in DEBIAN_INSTALLATIONS.glob("*/bin/postgres")
        if path.parent.parent.name.isdigit() and (path.parent / "initdb").is_file()
    ]
    if debian:
        return max(debian, key=lambda bindir: int(bindir.parent.name))
    # find_spec, not import: importing pgserver starts its own machinery (locks, psutil).
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "pginstall" / "bin"
        if (bundled / "postgres").is_file():
            return bundled
    on_path = shutil.which("postgres")
    if on_path is not None and (Path(on_path).parent / "initdb").is_file():
        return Path(on_path).parent
    raise ServerStartError(
        "no PostgreSQL server binaries found: `apt-get install postgresql` (Debian), "
        "`pip install pgserver`, or set READYCHECK_TEST_PG_BINDIR to a directory with "
        "initdb and postgres"
    )


def _server_environment() -> dict[str, str]:
    # PG* variables from the developer's shell (PGDATA, PGPORT, ...) must not steer our
    # cluster; LC_ALL=C keeps initdb from failing on a locale the machine lacks.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _usable_bindir(bindir: Path, account: Account | None, root: Path) -> Path:
    """``bindir``, or a copy of its installation the server account can execute.

    pgserver's binaries live in the virtualenv, which may sit under /root (mode 0700) where
    the unprivileged account cannot reach them. pgserver's answer is to chmod every parent
    up to /; we copy the relocatable installation (about 35 MB) into the run's temp dir,
    keeping the layout its RPATH expects: ``site-packages/pgserver/pginstall/bin`` finds
    its libpq in ``site-packages/pgserver.libs`` (where auditwheel put it).
    """
    if account is None or reachable_by(bindir, account):
        return bindir
    installation = bindir.parent
    package = installation.parent
    site = root / "site-packages"
    shutil.copytree(installation, site / package.name / installation.name, symlinks=True)
    wheel_libs = package.parent / f"{package.name}.libs"
    if wheel_libs.is_dir():
        shutil.copytree(wheel_libs, site / wheel_libs.name, symlinks=True)
    for path in [site, *site.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o055)
    return site / package.name / installation.name / bindir.name


def _libpq_url(user: str, password: str, port: int, dbname: str, **params: str | int) -> str:
    userinfo = quote(user, safe="")
    if password:
        userinfo += ":" + quote(password, safe="")
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{userinfo}@{HOST}:{port}/{quote(dbname, safe='')}{query}"


def _execute(dsn: str, query: Statement, params: Params | None) -> list[tuple[Any, ...]]:
    # A connection per statement: no idle admin session shows up in pg_stat_activity
    # while the checks under test count connections.
    with (
        psycopg.connect(dsn, autocommit=True, connect_timeout=5) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


class PostgresServer:
    """A running throwaway cluster: its address, roles, passwords, and admin helpers."""

    def __init__(
        self,
        *,
        root: Path,
        bindir: Path,
        process: ServerProcess,
        port: int,
        superuser_password: str,
        app_password: str,
    ) -> None:
        self.root = root
        self.bindir = bindir
        self.process = process
        self.host = HOST
        self.port = port
        self.socket_dir = root / "socket"
        self.superuser = SUPERUSER
        self.superuser_password = superuser_password
        self.app_user = APP_USER
        self.app_password = app_password
        self.app_database = APP_DATABASE
        self.server_version_num = 0
        self._database_count = 0

    @classmethod
    def start(cls, *, timeout: float = 30.0) -> PostgresServer:
        """initdb a new cluster in a temp dir, start it, and create the ``app`` role."""
        account = unprivileged_account()
        root = private_temp_dir("pg", account)
        try:
            server = cls._start_in(root, account, timeout)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        atexit.register(server.stop)
        return server

    @classmethod
    def _start_in(cls, root: Path, account: Account | None, timeout: float) -> PostgresServer:
        env = _server_environment()
        bindir = _usable_bindir(find_postgres_bindir(), account, root)
        socket_dir = root / "socket"
        socket_dir.mkdir()
        password_file = root / "superuser-password"
        superuser_password = secrets.token_hex(12)
        password_file.write_text(superuser_password)
        password_file.chmod(0o600)
        if account is not None:
            os.chown(socket_dir, account.uid, account.gid)
            os.chown(password_file, account.uid, account.gid)
        run_tool(
            [
                bindir / "initdb",
                f"--pgdata={root / 'data'}",
                f"--username={SUPERUSER}",
                f"--pwfile={password_file}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            log_path=root / "initdb.log",
            account=account,
            env=env,
        )
        password_file.unlink()

        def launch(port: int) -> ServerProcess:
            settings = {
                **_SERVER_SETTINGS,
                "port": str(port),
                "unix_socket_directories": str(socket_dir),
            }
            argv: list[str | Path] = [bindir / "postgres", "-D", root / "data"]
            for key, value in settings.items():
                argv += ["-c", f"{key}={value}"]
            return ServerProcess.start(
                argv,
                name=f"postgres ({bindir})",
                log_path=root / "postgres.log",
                account=account,
                env=env,
                # SIGINT is PostgreSQL's fast shutdown: roll back sessions, exit.
                stop_signal=signal.SIGINT,
                # SIGQUIT is its immediate shutdown, which also ends the backends.
                parent_death_signal=signal.SIGQUIT,
            )

        def ready(port: int) -> bool:
            url = _libpq_url(SUPERUSER, superuser_password, port, "postgres")
            try:
                with psycopg.connect(url, connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                return False

        port, process = start_on_free_port(launch, ready, host=HOST, timeout=timeout)
        server = cls(
            root=root,
            bindir=bindir,
            process=process,
            port=port,
            superuser_password=superuser_password,
            app_password=f"app-{secrets.token_hex(12)}",
        )
        try:
            server._create_app_role()
        except BaseException:
            server.stop()
            raise
        return server

    def _create_app_role(self) -> None:
        self.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(APP_USER), sql.Literal(self.app_password)
            )
        )
        self.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(APP_DATABASE), sql.Identifier(APP_USER)
            )
        )
        rows = self.execute("SELECT current_setting('server_version_num')::int")
        self.server_version_num = rows[0][0]

    def dsn(
        self,
        *,
        user: str = APP_USER,
        password: str | None = None,
        dbname: str | None = None,
        **params: str | int,
    ) -> str:
        """A libpq URL to this server over TCP.

        ``password=None`` uses the role's known password (superuser or app); ``""`` leaves
        the password out. ``dbname`` defaults to ``app``. Extra keywords become query
        parameters (``connect_timeout=2``, ``application_name=...``).
        """
        if password is None:
            known = {SUPERUSER: self.superuser_password, APP_USER: self.app_password}
            if user not in known:
                raise ValueError(f"no known password for role {user!r}: pass password=")
            password = known[user]
        return _libpq_url(user, password, self.port, dbname or APP_DATABASE, **params)

    def execute(
        self, query: Statement, params: Params | None = None, *, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement as superuser, in autocommit, and return its rows (if any)."""
        return _execute(self.dsn(user=SUPERUSER, dbname=dbname), query, params)

    def create_database(self, hint: str = "db", *, owner: str = APP_USER) -> PgDatabase:
        """A new, empty database owned by ``owner``; ``hint`` goes into its name."""
        self._database_count += 1
        slug = re.sub(r"[^a-z0-9]+", "_", hint.lower()).strip("_")[:40]
        name = f"t{self._database_count}_{slug}_{secrets.token_hex(3)}"
        self.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
        return PgDatabase(server=self, name=name, owner=owner)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, terminating its connections first (WITH FORCE, PostgreSQL 13+)."""
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def stop(self) -> None:
        """Stop the server and delete its temp dir; safe to call more than once."""
        self.process.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __repr__(self) -> str:  # no passwords: reprs end up in pytest's failure output
        return f"PostgresServer({self.host}:{self.port}, version {self.server_version_num})"


@dataclass(frozen=True)
class PgDatabase:
    """One test's own database on the session's server."""

    server: PostgresServer
    name: str
    owner: str

    @property
    def dsn(self) -> str:
        """libpq URL as the owner (``app``), with its password."""
        return self.server.dsn(user=self.owner, dbname=self.name)

    @property
    def superuser_dsn(self) -> str:
        return self.server.dsn(user=SUPERUSER, dbname=self.name)

    def execute(
        self, query: Statement, params: Params | None = None, *, as_superuser: bool = False
    ) -> list[tuple[Any, ...]]:
        """Run one statement in this database (as the owner by default) and return its rows."""
        return _execute(self.superuser_dsn if as_superuser else self.dsn, query, params)


_running: PostgresServer | None = None


def shared_postgres_server() -> PostgresServer:
    """The run's one server, started on first use.

    Shared at module level so that the fixture, if registered twice (a conftest plugin and
    an import into a test module), still starts one cluster, not two.
    """
    global _running
    if _running is None or not _running.process.is_running():
        _running = PostgresServer.start()
    return _running


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = shared_postgres_server()
    yield server
    server.stop()


@pytest.fixture
def pg_database(
    postgres_server: PostgresServer, request: pytest.FixtureRequest
) -> Iterator[PgDatabase]:
    database = postgres_server.create_database(request.node.name)
    yield database
    postgres_server.drop_database(database.name)
