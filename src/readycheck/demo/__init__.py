"""``readycheck demo``: a throwaway PostgreSQL, Redis and sample service, checked by the
demo profile (demo.yaml, also profiles/demo.yaml), so a newcomer sees every check family
at work against real servers in one command.

What ``running()`` sets up, all on 127.0.0.1, and takes down again on the way out
(Ctrl-C and SIGTERM included):

    work dir         readycheck-demo-<pid>-* in the temp dir: TLS files, service.env,
                     service.log, a copy of migrations/ (Alembic writes __pycache__
                     next to the scripts it reads, so never into the package), and
                     backups/app.dump, a pg_dump taken once migrated (the "nightly" backup)
    PostgreSQL       postgres.PostgresServer, migrated to all but the last revision
                     (all of them with fix=True)
    Redis            redis.RedisServer
    orders-api       service.launch(), a process of its own; SECRET_KEY in its settings
                     a placeholder (strong with fix=True)
    Prometheus       prometheus.PrometheusServer scraping orders-api every second, with its
                     alerting rules (PROMETHEUS_RULES), when a prometheus binary is
                     installed; otherwise the profile's checks tagged prometheus are left
                     out, and a note says so

The profile reads where everything is from READYCHECK_DEMO_* variables, set in
``os.environ`` for the run only. Running the profile is the CLI's job (its engine loop and
signal handling); the CLI writes the outputs into a directory of the demo's own
(``readycheck-demo/`` unless ``--dir`` says otherwise, see ``claim()``), never over a
report or results file of the user's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from readycheck.profile import Profile

PROFILE = Path(__file__).with_name("demo.yaml")
MIGRATIONS = Path(__file__).with_name("migrations")
REPORT = "readiness-report.md"
RESULTS = "results.json"
JUNIT = "junit.xml"
OUTPUTS = (REPORT, RESULTS, JUNIT)
DIRECTORY = Path("readycheck-demo")
# What a hurried developer leaves in .env: secret.strength names it a placeholder.
WEAK_SECRET = "changeme-please"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


PROMETHEUS_TAG = "prometheus"
PROMETHEUS_RULES = """\
groups:
  - name: orders-api
    rules:
      - alert: OrdersApiDown
        expr: up{job="orders-api"} == 0
        for: 30s
        labels: {severity: critical}
        annotations: {summary: "orders-api does not answer Prometheus' scrapes"}
      - alert: OrdersApiHighErrorRate
        expr: >-
          sum(rate(http_requests_total{job="orders-api", code=~"5.."}[1m]))
          / sum(rate(http_requests_total{job="orders-api"}[1m])) > 0.05
        for: 2m
        labels: {severity: critical}
        annotations: {summary: "over 5% of orders-api's answers are server errors"}
"""


@dataclass(frozen=True)
class DemoRun:
    """What the CLI needs while the demo's servers run."""

    profile: Path
    leave_out: frozenset[str] = frozenset()
    """Tags of the profile's checks this machine cannot run (no Prometheus installed)."""
    notes: tuple[str, ...] = ()
    """Lines to print before the checks run: what is left out, and why."""

    def fit(self, profile: Profile) -> Profile:
        """The profile without the checks ``leave_out`` names."""
        import dataclasses

        kept = tuple(c for c in profile.checks if not self.leave_out & set(c.tags))
        return dataclasses.replace(profile, checks=kept)

    def shield(self) -> None:
        """Ignore Ctrl-C and SIGTERM from now until the servers are stopped.

        Called once the checks have run: writing the outputs and stopping the servers
        are short and bounded, and an interruption there would leave a half-written
        temp file or a server behind. (The engine's loop, on its way out, also puts the
        default SIGTERM action back, which would end the process without cleaning up.)
        """
        for signum in _SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def claim(directory: Path) -> bool:
    """Make ``directory`` the demo's: True when it was created for this run; False when it
    exists and holds nothing but the demo's own outputs (an earlier demo's, replaced).

    Anything else (a file, a directory with other files in it) is refused before anything
    starts: the demo never writes over what it did not write.
    """
    from readycheck.errors import UsageError

    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--dir {directory}: not a directory")
    if directory.is_dir():
        others = sorted(p.name for p in directory.iterdir() if p.name not in OUTPUTS)
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise UsageError(
                f"--dir {directory}: it holds files the demo did not write ({shown}); "
                "give a new or empty directory"
            )
        return False
    try:
        directory.mkdir()
    except OSError as exc:
        raise UsageError(f"--dir {directory}: cannot create it: {exc.strerror or exc}") from None
    return True


def release(directory: Path) -> None:
    """Remove a directory ``claim()`` created, when the demo ended before writing in it."""
    with contextlib.suppress(OSError):
        directory.rmdir()  # only if empty


def announcement(fix: bool, directory: Path = DIRECTORY) -> str:
    """The line printed before anything starts."""
    planted = (
        "every migration applied and a strong SECRET_KEY"
        if fix
        else "the last migration left pending and a placeholder SECRET_KEY"
    )
    return (
        "readycheck demo: starting a throwaway PostgreSQL, Redis and a sample service "
        f"(orders-api) on 127.0.0.1, with {planted}; then running profiles/demo.yaml "
        f"against them and writing the outputs into {directory}{os.sep}"
    )


def next_step(fix: bool, exit_code: int, directory: Path = DIRECTORY) -> str:
    """The line printed last: what to try next ("" when the outputs could not be written:
    the error said why)."""
    report = directory / REPORT
    if exit_code == 130:
        return "Interrupted: everything the demo started is stopped."
    if exit_code not in (0, 1):
        return ""
    if not fix:
        return (
            f"Open {report} to see why it is not ready (a pending migration, a weak "
            "SECRET_KEY), then try `readycheck demo --fix`: the same checks end READY."
        )
    if exit_code:
        return f"Not ready even with --fix: {report} says why."
    return (
        f"Open {report} for the sign-off report. Next: `readycheck init` writes a starter "
        "profile for your own service."
    )


@contextlib.contextmanager
def running(*, fix: bool) -> Iterator[DemoRun]:
    """Start everything, set READYCHECK_DEMO_*, and yield; stop everything on the way out.

    SIGTERM interrupts the start-up as Ctrl-C does (KeyboardInterrupt), so whatever was
    already started is stopped; the servers themselves run in sessions of their own and
    are stopped by us, not by the terminal.
    """
    previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}
    signal.signal(signal.SIGTERM, _interrupt)
    stack = contextlib.ExitStack()
    try:
        run, environ = _start(stack, fix=fix)
        with _environment(environ):
            yield run
    finally:
        for signum in _SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        try:
            stack.close()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def attest_rehearsal(profile: Profile) -> None:
    """Attest the demo's manual item as its release manager would (``--fix``)."""
    from datetime import UTC, datetime

    from readycheck import attestations
    from readycheck.checks.manual import ManualParams

    item = profile.check("rollback-rehearsed")
    assert isinstance(item.params, ManualParams)
    attestations.attest(
        profile.base_dir / item.params.file,
        check=item.id,
        by="release-manager",
        note="rehearsed on staging (recorded by readycheck demo --fix)",
        digest=profile.digest,
        release=profile.signoff.release if profile.signoff else None,
        now=datetime.now(UTC).replace(microsecond=0),
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _start(stack: contextlib.ExitStack, *, fix: bool) -> tuple[DemoRun, dict[str, str]]:
    # Imported here: `readycheck --help` must not pay for psycopg, aiohttp and cryptography.
    from readycheck.demo import certificates
    from readycheck.demo import service as orders_api
    from readycheck.demo.postgres import PostgresServer
    from readycheck.demo.processes import private_temp_dir
    from readycheck.demo.redis import RedisServer

    work = private_temp_dir("demo", None)
    stack.callback(shutil.rmtree, work, ignore_errors=True)
    postgres = PostgresServer.start(label="demo")
    stack.callback(postgres.stop)
    redis = RedisServer.start(label="demo")
    stack.callback(redis.stop)

    tls = certificates.issue(work, organization="readycheck demo")
    settings_file = work / "service.env"
    settings_file.touch(mode=0o600)
    settings_file.write_text(
        _dotenv(
            {
                "ENVIRONMENT": "production",
                "DEBUG": "false",
                "LOG_LEVEL": "INFO",
                "DATABASE_URL": postgres.dsn(),
                "REDIS_URL": redis.url(),
                "CORS_ORIGINS": "https://shop.example.com",
                "SECRET_KEY": secrets.token_urlsafe(48) if fix else WEAK_SECRET,
                "JWT_SIGNING_KEY": secrets.token_urlsafe(32),
            }
        )
    )
    # The service starts (imports, connects) while Alembic migrates: half a second saved.
    service = orders_api.launch(settings_file, tls, work / "service.log")
    stack.callback(service.stop)
    scripts = shutil.copytree(
        MIGRATIONS, work / "migrations", ignore=shutil.ignore_patterns("__pycache__")
    )
    _migrate(postgres.dsn(), scripts, fix=fix)
    (work / "backups").mkdir()
    postgres.dump(work / "backups" / "app.dump")
    service.wait_until_ready()
    prometheus_url, run = _start_prometheus(stack, service.http_url)

    environ = {
        "READYCHECK_DEMO_DIR": str(work),
        "READYCHECK_DEMO_DATABASE_URL": postgres.dsn(),
        "READYCHECK_DEMO_REDIS_URL": redis.url(),
        "READYCHECK_DEMO_HTTP_URL": service.http_url,
        "READYCHECK_DEMO_HTTPS_URL": service.https_url,
        "READYCHECK_DEMO_WEBSOCKET_URL": service.https_url.replace("https:", "wss:") + "/ws",
        "READYCHECK_DEMO_PYTHON": sys.executable,
        "READYCHECK_DEMO_RELEASE": orders_api.VERSION,
    }
    if prometheus_url is not None:
        environ["READYCHECK_DEMO_PROMETHEUS_URL"] = prometheus_url
    return run, environ


def _start_prometheus(stack: contextlib.ExitStack, scraped: str) -> tuple[str | None, DemoRun]:
    """Prometheus scraping orders-api at ``scraped``, once it has scraped it; or, with no
    prometheus installed, a run that leaves the Prometheus checks out."""
    from urllib.parse import urlsplit

    from readycheck.demo.prometheus import EXECUTABLE_VARIABLE, PrometheusServer, find_prometheus

    if find_prometheus() is None:
        note = (
            "readycheck demo: no prometheus installed, so the Prometheus checks are left out "
            f"(apt-get install prometheus, or set {EXECUTABLE_VARIABLE}, to see them)"
        )
        run = DemoRun(PROFILE, leave_out=frozenset({PROMETHEUS_TAG}), notes=(note,))
        return None, run

    def write_config(root: Path) -> Path:
        (root / "rules.yml").write_text(PROMETHEUS_RULES)
        config = root / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{root / 'rules.yml'}]\n"
            "scrape_configs:\n"
            "  - job_name: orders-api\n"
            f"    static_configs: [{{targets: ['{urlsplit(scraped).netloc}']}}]\n"
        )
        return config

    server = PrometheusServer.start(label="demo", write_config=write_config)
    stack.callback(server.stop)
    server.wait_until(
        lambda: bool(server.get("/api/v1/query", query='up{job="orders-api"} == 1')["result"]),
        "the first scrape of orders-api",
    )
    return server.url, DemoRun(PROFILE)


def _migrate(dsn: str, scripts: Path, *, fix: bool) -> None:
    """``alembic upgrade`` to the head (fix), or to the revision before it; then ANALYZE,
    as autovacuum would have done in a database that has been up for a while (the
    planner's row estimates are what alembic.safety weighs its findings by)."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from readycheck.demo.postgres import execute

    config = Config()
    config.set_main_option("script_location", str(scripts))
    # SQLAlchemy's default PostgreSQL driver is psycopg2; readycheck ships psycopg 3.
    # Config values go through ConfigParser interpolation: double the % of URL escapes.
    url = "postgresql+psycopg://" + dsn.split("://", 1)[1]
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    below = ScriptDirectory.from_config(config).get_revision("head").down_revision
    command.upgrade(config, "head" if fix or not isinstance(below, str) else below)
    execute(dsn, "ANALYZE")


def _dotenv(values: Mapping[str, str]) -> str:
    # Single quotes: no ${...} expansion and no escapes; our values hold no quote.
    return "".join(f"{name}='{value}'\n" for name, value in values.items())


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
