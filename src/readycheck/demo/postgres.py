"""A throwaway PostgreSQL cluster: a real server on loopback, password authentication, gone
when it is stopped.

``PostgresServer.start(label=...)`` initialises a cluster in a temp dir of its own
(``readycheck-<label>-pg-<pid>-*``), listening on 127.0.0.1 on a free port, scram-sha-256
for every connection. Roles: ``postgres`` (superuser, for setup) and ``app`` (plain login
role) that owns database ``app``. Passwords are random per start. ``stop()`` shuts it down
and removes its temp dir; it also runs at interpreter exit. ``readycheck demo`` starts one,
and so do the test suite's fixtures (tests/servers/postgres.py).

``start(..., tls=True)`` also turns SSL on, with a certificate for 127.0.0.1 from a CA of
its own (``server.tls.ca_file``, for ``sslrootcert``); pgserver's PostgreSQL is built
without SSL (``ssl_supported``). ``server.start_replica(label=...)`` starts a streaming
standby of a running server (pg_basebackup -R), in a temp dir of its own, with the same
roles and passwords.

Server binaries, first found wins: ``$READYCHECK_PG_BINDIR``; the newest Debian
``/usr/lib/postgresql/<major>/bin``; the ones the ``pgserver`` wheel bundles (PostgreSQL 16,
installed by ``pip install 'readycheck[demo]'``); ``postgres`` on PATH. Read
``server_version_num`` rather than assuming a major version.

Run as root, initdb and postgres refuse to start: the cluster then belongs to an
unprivileged account (see processes.unprivileged_account).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, LiteralString, Self, TypeAlias
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.abc import Params

from readycheck.demo import certificates
from readycheck.demo.certificates import TlsFiles
from readycheck.demo.processes import (
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
BINDIR_VARIABLE = "READYCHECK_PG_BINDIR"

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
    # A standby started later has no slot: the primary keeps this much WAL for it, so one
    # that falls behind while the machine is busy (CREATE DATABASE writes the whole
    # template to WAL) catches up instead of finding its next segment removed.
    "wal_keep_size": "512MB",
}


def find_postgres_bindir() -> Path:
    """The directory holding initdb and postgres; see the module docstring for the order."""
    override = os.environ.get(BINDIR_VARIABLE)
    if override:
        if not (Path(override) / "postgres").is_file():
            raise ServerStartError(f"{BINDIR_VARIABLE}={override} has no postgres")
        return Path(override)
    debian = [
        path.parent
        for path in DEBIAN_INSTALLATIONS.glob("*/bin/postgres")
        if path.parent.parent.name.isdigit() and (path.parent / "initdb").is_file()
    ]
    if debian:
        return max(debian, key=lambda bindir: int(bindir.parent.name))
    # find_spec, not import: importing pgserver starts its own machinery (locks under ~,
    # psutil), and all we want are its files.
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "pginstall" / "bin"
        if (bundled / "postgres").is_file():
            return bundled
    on_path = shutil.which("postgres")
    if on_path is not None and (Path(on_path).parent / "initdb").is_file():
        return Path(on_path).parent
    raise ServerStartError(
        "no PostgreSQL server binaries found: install them with "
        "`pip install 'readycheck[demo]'` (a PostgreSQL 16 wheel), or "
        f"`apt-get install postgresql`, or set {BINDIR_VARIABLE} to a directory with "
        "initdb and postgres"
    )


def ssl_supported(bindir: Path) -> bool:
    """Whether the server in ``bindir`` was built with SSL (pgserver's wheel is not).

    Without pg_config to ask, assume it was: ``ssl=on`` then fails at start with the
    server's own "SSL is not supported by this build".
    """
    try:
        configure = subprocess.run(
            [bindir / "pg_config", "--configure"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return True
    # --with-openssl up to PostgreSQL 13, --with-ssl=openssl from 14 on (both still accepted).
    return "--with-openssl" in configure or "--with-ssl=openssl" in configure


def _server_environment() -> dict[str, str]:
    # PG* variables from the user's shell (PGDATA, PGPORT, ...) must not steer our
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


def _launch(
    bindir: Path,
    root: Path,
    port: int,
    *,
    account: Account | None,
    env: Mapping[str, str],
    settings: Mapping[str, str],
) -> ServerProcess:
    """Start ``postgres`` on the cluster in ``root/data``; settings go on the command line."""
    argv: list[str | Path] = [bindir / "postgres", "-D", root / "data"]
    all_settings = {
        **_SERVER_SETTINGS,
        **settings,
        "port": str(port),
        "unix_socket_directories": str(root / "socket"),
    }
    for key, value in all_settings.items():
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


def _answers(url: str, *, streaming: bool = False) -> bool:
    """Whether the server at ``url`` accepts a connection (and, if asked, is a standby whose
    WAL receiver streams from its primary: answering in recovery comes a moment sooner)."""
    try:
        with psycopg.connect(url, connect_timeout=2) as connection:
            if not streaming:
                return True
            row = connection.execute(
                "SELECT pg_is_in_recovery() AND EXISTS "
                "(SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')"
            ).fetchone()
            return bool(row and row[0])
    except psycopg.OperationalError:
        # Refused, or "the database system is starting up" / "not yet accepting connections".
        return False


def libpq_url(user: str, password: str, port: int, dbname: str, **params: str | int) -> str:
    """A ``postgresql://`` URL to a server on HOST; ``password=""`` leaves it out."""
    userinfo = quote(user, safe="")
    if password:
        userinfo += ":" + quote(password, safe="")
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{userinfo}@{HOST}:{port}/{quote(dbname, safe='')}{query}"


def execute(dsn: str, query: Statement, params: Params | None = None) -> list[tuple[Any, ...]]:
    """Run one statement at ``dsn`` in autocommit and return its rows (if any)."""
    # A connection per statement: no idle admin session shows up in pg_stat_activity
    # while checks count connections.
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
        tls: TlsFiles | None = None,
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
        self.tls = tls
        """The CA clients trust (``tls.ca_file``) and the server's files, when SSL is on."""

    @classmethod
    def start(
        cls,
        *,
        label: str,
        timeout: float = 30.0,
        tls: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> Self:
        """initdb a new cluster in a temp dir, start it, and create the ``app`` role.

        ``label`` names the owner in the temp dir's name (``demo``, ``test``). ``tls``
        turns SSL on with a new certificate for 127.0.0.1 (clients may still connect
        without SSL, as sslmode=prefer and disable do). ``settings`` are more server
        settings (``archive_mode``, say).
        """
        account = unprivileged_account()
        root = private_temp_dir(f"{label}-pg", account)
        try:
            server = cls._start_in(root, account, timeout, tls=tls, settings=settings or {})
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        atexit.register(server.stop)
        return server

    @classmethod
    def _start_in(
        cls,
        root: Path,
        account: Account | None,
        timeout: float,
        *,
        tls: bool,
        settings: Mapping[str, str],
    ) -> Self:
        env = _server_environment()
        found = find_postgres_bindir()
        if tls and not ssl_supported(found):
            raise ServerStartError(f"the PostgreSQL in {found} is built without SSL")
        bindir = _usable_bindir(found, account, root)
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
        settings = dict(settings)
        tls_files = _issue_certificate(root / "tls", account) if tls else None
        if tls_files is not None:
            settings |= {
                "ssl": "on",
                "ssl_cert_file": str(tls_files.cert_file),
                "ssl_key_file": str(tls_files.key_file),
            }
        port, process = start_on_free_port(
            lambda port: _launch(bindir, root, port, account=account, env=env, settings=settings),
            lambda port: _answers(libpq_url(SUPERUSER, superuser_password, port, "postgres")),
            host=HOST,
            timeout=timeout,
        )
        server = cls(
            root=root,
            bindir=bindir,
            process=process,
            port=port,
            superuser_password=superuser_password,
            app_password=f"app-{secrets.token_hex(12)}",
            tls=tls_files,
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

    def start_replica(
        self, *, label: str, timeout: float = 30.0, settings: Mapping[str, str] | None = None
    ) -> Self:
        """A streaming standby of this server, returned once its WAL receiver streams.

        pg_basebackup -R copies the cluster (roles, passwords and databases included) into a
        temp dir of its own and points it at this server as the superuser; initdb's
        pg_hba.conf already lets that role make replication connections from 127.0.0.1, and
        wal_level's default (replica) is enough. Stop the replica before this server: a
        standby whose primary is gone keeps retrying, but stops just the same. ``settings``
        are more server settings (``cluster_name`` names it in pg_stat_replication).
        """
        account = unprivileged_account()
        root = private_temp_dir(f"{label}-pg-replica", account)
        try:
            replica = self._start_replica_in(root, account, timeout, settings or {})
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        # atexit runs last-registered first: the replica stops before its primary.
        atexit.register(replica.stop)
        return replica

    def _start_replica_in(
        self, root: Path, account: Account | None, timeout: float, settings: Mapping[str, str]
    ) -> Self:
        socket_dir = root / "socket"
        socket_dir.mkdir()
        if account is not None:
            os.chown(socket_dir, account.uid, account.gid)
        env = _server_environment()
        run_tool(
            [
                self.bindir / "pg_basebackup",
                f"--pgdata={root / 'data'}",
                f"--host={self.host}",
                f"--port={self.port}",
                f"--username={SUPERUSER}",
                "--no-password",
                # standby.signal, and primary_conninfo (with the password) in
                # postgresql.auto.conf, which only the server account can read.
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
            log_path=root / "pg_basebackup.log",
            account=account,
            # In the environment rather than on the command line, where ps would show it.
            env={**env, "PGPASSWORD": self.superuser_password},
        )
        port, process = start_on_free_port(
            lambda port: _launch(
                self.bindir, root, port, account=account, env=env, settings=settings
            ),
            lambda port: _answers(
                libpq_url(SUPERUSER, self.superuser_password, port, "postgres"), streaming=True
            ),
            host=HOST,
            timeout=timeout,
        )
        replica = type(self)(
            root=root,
            bindir=self.bindir,
            process=process,
            port=port,
            superuser_password=self.superuser_password,
            app_password=self.app_password,
        )
        replica.server_version_num = self.server_version_num
        return replica

    def dump(self, path: Path) -> None:
        """pg_dump the ``app`` database into ``path`` (custom format), as a nightly backup
        job would: the demo's postgres.backups check reads its age."""
        run_tool(
            [
                self.bindir / "pg_dump",
                "--format=custom",
                f"--file={path}",
                # No password on the command line, where ps would show it.
                self.dsn(password=""),
            ],
            log_path=path.with_name(f"{path.name}.log"),
            account=None,
            env={**_server_environment(), "PGPASSWORD": self.app_password},
        )

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
        return libpq_url(user, password, self.port, dbname or APP_DATABASE, **params)

    def execute(
        self, query: Statement, params: Params | None = None, *, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement as superuser, in autocommit, and return its rows (if any)."""
        return execute(self.dsn(user=SUPERUSER, dbname=dbname), query, params)

    def stop(self) -> None:
        """Stop the server and delete its temp dir; safe to call more than once."""
        self.process.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __repr__(self) -> str:  # no passwords: reprs end up in error output
        return f"PostgresServer({self.host}:{self.port}, version {self.server_version_num})"


def _issue_certificate(directory: Path, account: Account | None) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1 that only the server account may read:
    postgres refuses a key that its group or others can read."""
    directory.mkdir(mode=0o700)
    files = certificates.issue(directory, organization="readycheck PostgreSQL")
    if account is not None:
        for path in (directory, files.ca_file, files.cert_file, files.key_file):
            os.chown(path, account.uid, account.gid)
    files.key_file.chmod(0o600)
    return files
