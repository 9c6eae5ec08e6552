"""Verdict stability: a healthy stack READY in every run, a flawed one NOT READY in every
run with the same blocking checks (issue 15, "How we will know").

    python benchmarks/verdict_stability.py [--runs N | --quick] [--no-load] [--warm-pool]
                                           [--results DIR]

Starts a real stack on 127.0.0.1, all of it the demo's parts (readycheck.demo):
PostgreSQL (the newest server binaries found) with a streaming standby, a pg_monitor role
and a pg_dump backup; Redis; orders-api in 2 worker processes
(benchmarks/pooled_orders_api.py), each querying through a SQLAlchemy pool of its own
(pool_size 10, max_overflow 20, application_name orders-api) and serving HTTPS with a
certificate from a private CA; the demo's Alembic migrations applied to head.

The profile is what a user writes: `readycheck init --stack fastapi-postgres` (the
starter, unchanged) and benchmarks/verdict_stability.yaml beside it, which extends it
with what this service differs in. Each run is `readycheck run PROFILE --json FILE` in a
process of its own; the verdict and the blocking checks are read from the JSON.

1. The healthy stack, N runs (default 20; --quick: 5) while a CPU-bound process competes
   for a core (--no-load: without it). Target: READY N/N. Every run that is not READY is
   listed with the checks that blocked and their summaries, then the figures the latency
   and pool verdicts rode on (min / median / max over the runs).
2. The same PostgreSQL and Redis with planted flaws, N runs under the same load:
   ix_orders_account_id dropped; a new Alembic revision not applied; orders-api restarted
   with its orders list taking 400 ms (p95 budget 300 ms), a weak SECRET_KEY, and pools
   of 50 + 20 in each of its 2 workers (140 connections, max_connections is 100).
   Target: NOT READY N/N, the same blocking set in every run; the sets that differ are
   listed.

SQLAlchemy's pool opens connections as requests need them, so the service holds only a
few between runs; --warm-pool has each worker keep 10 connections open (the healthy
pool_size, in the flawed release too), as a service does once traffic has filled its
pool. --results DIR keeps every run's JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from psycopg import sql  # noqa: E402
from tests.servers.alembic_migrations import upgrade  # noqa: E402

from readycheck.demo import MIGRATIONS, WEAK_SECRET, certificates  # noqa: E402
from readycheck.demo.certificates import TlsFiles  # noqa: E402
from readycheck.demo.postgres import PostgresServer  # noqa: E402
from readycheck.demo.processes import ServerProcess, private_temp_dir  # noqa: E402
from readycheck.demo.redis import RedisServer  # noqa: E402
from readycheck.demo.service import HOST, RunningService  # noqa: E402

STARTER = "fastapi-postgres"
ADAPTATION = Path(__file__).with_name("verdict_stability.yaml")
WORKER = Path(__file__).with_name("pooled_orders_api.py")
WORKERS = 2
RUN_TIMEOUT_S = 600
CORS_ORIGINS = "https://shop.example.com"
# Metrics shown over the runs, where a verdict rides on a measured figure.
FIGURES = {
    "p95": ("p95_ms", "send_lag_p99_ms", "client_overhead_ms"),
    "pool": ("application_sessions", "other_sessions", "required", "headroom"),
}


@dataclass(frozen=True)
class Release:
    """What one deploy of orders-api runs with."""

    pool_size: int
    max_overflow: int
    secret_key: str
    slow_orders_ms: int = 0


HEALTHY = Release(pool_size=10, max_overflow=20, secret_key=secrets.token_urlsafe(48))
FLAWED = Release(pool_size=50, max_overflow=20, secret_key=WEAK_SECRET, slow_orders_ms=400)
# The check each planted flaw must block.
FLAWS = {
    "indexes": "index ix_orders_account_id dropped",
    "migrations": "revision pending1 not applied",
    "p95": f"orders list takes {FLAWED.slow_orders_ms} ms",
    "secret-key": "weak SECRET_KEY",
    "pool": f"{WORKERS} x ({FLAWED.pool_size} + {FLAWED.max_overflow}) connections",
}
PENDING_REVISION = '''"""add orders.cancelled_at: the release's migration, not applied

Revision ID: pending1
Revises: {head}
"""

import sqlalchemy as sa
from alembic import op

revision = "pending1"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("cancelled_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("orders", "cancelled_at")
'''


@dataclass(frozen=True)
class Stack:
    """The servers that stay up for the whole benchmark, and the work dir."""

    work: Path
    postgres: PostgresServer
    monitor_dsn: str
    """A role in pg_monitor, as the starter asks for its replication and backup checks."""
    redis: RedisServer
    tls: TlsFiles


@dataclass(frozen=True)
class Run:
    """What one `readycheck run` said."""

    exit_code: int
    verdict: str
    blocking: dict[str, str]
    """Blocking check id: its status and summary."""
    statuses: dict[str, str]
    metrics: dict[str, dict[str, float]]
    not_run: list[str]
    """Blocking-severity checks that did not run."""
    seconds: float


def start_stack(cleanup: contextlib.ExitStack) -> Stack:
    work = private_temp_dir("bench", None)
    cleanup.callback(shutil.rmtree, work, ignore_errors=True)
    postgres = PostgresServer.start(label="bench")
    cleanup.callback(postgres.stop)
    redis = RedisServer.start(label="bench")
    cleanup.callback(redis.stop)
    tls = certificates.issue(work, organization="readycheck benchmark")
    scripts = shutil.copytree(
        MIGRATIONS, work / "migrations", ignore=shutil.ignore_patterns("__pycache__")
    )
    upgrade(postgres.dsn(), "heads", script_location=scripts)
    monitor_password = secrets.token_hex(12)
    postgres.execute(
        sql.SQL("CREATE ROLE monitor LOGIN PASSWORD {} IN ROLE pg_monitor").format(
            sql.Literal(monitor_password)
        )
    )
    replica = postgres.start_replica(label="bench")
    cleanup.callback(replica.stop)
    # The backup job: a pg_dump file, which the backups check reads the age of.
    (work / "backups").mkdir()
    dump = ["--format=custom", "--file=backups/latest.dump", postgres.dsn()]
    subprocess.run(
        [postgres.bindir / "pg_dump", *dump],
        cwd=work,
        check=True,
    )
    subprocess.run(
        [sys.executable, "-m", "readycheck", "init", "--stack", STARTER, "readycheck.yaml"],
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    shutil.copy(ADAPTATION, work / "orders-api.yaml")
    return Stack(
        work=work,
        postgres=postgres,
        monitor_dsn=postgres.dsn(user="monitor", password=monitor_password),
        redis=redis,
        tls=tls,
    )


def deploy(
    stack: Stack, release: Release, cleanup: contextlib.ExitStack, *, warm_pool: bool
) -> RunningService:
    """Start orders-api's workers on shared listening sockets; return once it answers."""
    settings = stack.work / "service.env"
    settings.touch(mode=0o600)
    settings.write_text(
        "".join(
            f"{name}='{value}'\n"
            for name, value in {
                "ENVIRONMENT": "production",
                "DEBUG": "false",
                "DATABASE_URL": stack.postgres.dsn(),
                "REDIS_URL": stack.redis.url(),
                "CORS_ORIGINS": CORS_ORIGINS,
                "SECRET_KEY": release.secret_key,
                "DB_POOL_SIZE": release.pool_size,
                "DB_MAX_OVERFLOW": release.max_overflow,
                "SLOW_ORDERS_MS": release.slow_orders_ms,
                "DB_POOL_WARM": HEALTHY.pool_size if warm_pool else 0,
            }.items()
        )
    )
    listeners = [socket.create_server((HOST, 0)) for _scheme in ("http", "https")]
    http_url, https_url = (
        f"{scheme}://{HOST}:{sock.getsockname()[1]}"
        for scheme, sock in zip(("http", "https"), listeners, strict=True)
    )
    fds = [sock.fileno() for sock in listeners]
    workers: list[RunningService] = []
    try:
        for number in range(1, WORKERS + 1):
            process = ServerProcess.start(
                [
                    *(sys.executable, WORKER, settings, stack.tls.cert_file, stack.tls.key_file),
                    *(str(fd) for fd in fds),
                ],
                name=f"orders-api worker {number}",
                log_path=stack.work / f"service-{number}.log",
                account=None,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)},
                cwd=stack.work,
                pass_fds=fds,
            )
            cleanup.callback(process.stop)
            workers.append(RunningService(http_url, https_url, process))
    finally:
        for sock in listeners:
            sock.close()
    for worker in workers:
        worker.wait_until_ready()
    return workers[0]


def plant_flaws(stack: Stack) -> None:
    """What the flawed release brings beside its own settings: a dropped index and a
    migration not applied."""
    stack.postgres.execute("DROP INDEX ix_orders_account_id", dbname="app")
    # On top of whatever the demo's history ends with today.
    [(head,)] = stack.postgres.execute("SELECT version_num FROM alembic_version", dbname="app")
    (stack.work / "migrations" / "versions" / "pending1_add_orders_cancelled_at.py").write_text(
        PENDING_REVISION.format(head=head)
    )


def environment(stack: Stack, service: RunningService, release: Release) -> dict[str, str]:
    """What the profile reads, as the deploy job's environment would hold it."""
    return {
        **os.environ,
        "SERVICE_URL": service.https_url,
        # The URL the application's own settings hold, SQLAlchemy's driver named.
        "DATABASE_URL": "postgresql+psycopg://" + stack.postgres.dsn().split("://", 1)[1],
        "DATABASE_MONITOR_URL": stack.monitor_dsn,
        "REDIS_URL": stack.redis.url(),
        "SECRET_KEY": release.secret_key,
        "RELEASE_VERSION": "benchmark",
        "ENVIRONMENT": "production",
        "DEBUG": "false",
        "CORS_ORIGINS": CORS_ORIGINS,
        "DB_POOL_SIZE": str(release.pool_size),
        "DB_MAX_OVERFLOW": str(release.max_overflow),
        "WEB_CONCURRENCY": str(WORKERS),
    }


def run_profile(stack: Stack, env: Mapping[str, str], output: Path) -> Run:
    started = time.perf_counter()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "readycheck", "run", "orders-api.yaml"),
            *("--json", str(output), "--quiet", "--no-ci-annotations"),
        ],
        cwd=stack.work,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(
            f"readycheck run exited with code {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    document = json.loads(output.read_text())
    checks = document["checks"]
    return Run(
        exit_code=done.returncode,
        verdict=document["verdict"],
        blocking={
            check["id"]: f"{check['status']}: {check['summary']}"
            for check in checks
            if check.get("blocking")
        },
        statuses={check["id"]: check["status"] for check in checks},
        metrics={check["id"]: check.get("metrics", {}) for check in checks},
        not_run=list(document.get("not_run", [])),
        seconds=seconds,
    )


def run_series(
    label: str, stack: Stack, env: Mapping[str, str], runs: int, results_dir: Path
) -> list[Run]:
    results = []
    for number in range(1, runs + 1):
        run = run_profile(stack, env, results_dir / f"{label}-{number}.json")
        blocking = ", ".join(sorted(run.blocking)) or "-"
        not_run = f"  not run: {', '.join(run.not_run)}" if run.not_run else ""
        print(
            f"  {label} {number:>2}/{runs}: {run.verdict:<10} {run.seconds:5.1f} s  "
            f"blocking: {blocking}{not_run}",
            flush=True,
        )
        results.append(run)
    return results


@contextlib.contextmanager
def cpu_load(work: Path, enabled: bool) -> Iterator[None]:
    """A process that keeps one core busy, for as long as the block runs."""
    if not enabled:
        yield
        return
    process = ServerProcess.start(
        [sys.executable, "-c", "while True: pass"],
        name="cpu load",
        log_path=work / "load.log",
        account=None,
        env=os.environ,
    )
    try:
        yield
    finally:
        process.stop()


def status_counts(runs: list[Run]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for run in runs:
        for check, status in run.statuses.items():
            counts.setdefault(check, Counter())[status] += 1
    return counts


def _figure(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def report_figures(runs: list[Run]) -> None:
    for check, names in FIGURES.items():
        spans = []
        for name in names:
            values = sorted(
                run.metrics[check][name] for run in runs if name in run.metrics.get(check, {})
            )
            if values:
                low, middle, high = (
                    _figure(value) for value in (values[0], statistics.median(values), values[-1])
                )
                spans.append(f"{name} {low} / {middle} / {high}")
        if spans:
            print(f"  {check} (min / median / max): {'; '.join(spans)}")


def report_healthy(runs: list[Run]) -> None:
    ready = sum(run.verdict == "READY" for run in runs)
    mark = "ok" if ready == len(runs) else "MISSED"
    print(f"\nhealthy stack: READY {ready}/{len(runs)}  (target {len(runs)}/{len(runs)}) [{mark}]")
    unsteady = {
        check: counts
        for check, counts in status_counts(runs).items()
        if counts != Counter({"PASS": len(runs)})
    }
    for check, counts in sorted(unsteady.items()):
        print(f"  {check}: " + ", ".join(f"{status} {n}" for status, n in counts.most_common()))
    report_figures(runs)
    for number, run in enumerate(runs, 1):
        if run.verdict != "READY":
            print(f"  run {number}: {run.verdict}, blocked by")
            for check, why in sorted(run.blocking.items()):
                print(f"    {check}  {why}")
            if run.not_run:
                print(f"    not run: {', '.join(run.not_run)}")
    reasons = Counter(check for run in runs for check in run.blocking)
    if reasons:
        print(
            "  blocking checks over all runs: "
            + ", ".join(f"{check} {n}" for check, n in reasons.most_common())
        )


def report_flawed(runs: list[Run]) -> None:
    not_ready = sum(run.verdict == "NOT_READY" for run in runs)
    sets = Counter(frozenset(run.blocking) for run in runs)
    usual, _count = sets.most_common(1)[0]
    identical = len(sets) == 1
    print(
        f"\nflawed stack: NOT READY {not_ready}/{len(runs)}  (target {len(runs)}/{len(runs)}) "
        f"[{'ok' if not_ready == len(runs) else 'MISSED'}]"
    )
    print(
        f"  blocking set identical in every run: {'yes' if identical else 'NO'}  "
        f"({', '.join(sorted(usual)) or 'none'}{'' if identical else ', the most frequent'})"
    )
    for check, flaw in FLAWS.items():
        caught = sum(check in run.blocking for run in runs)
        print(f"  {flaw:<40} blocked by {check:<11} in {caught}/{len(runs)}")
    unplanted = sorted(usual - FLAWS.keys())
    if unplanted:
        print(f"  also blocking, no flaw planted for it: {', '.join(unplanted)}")
    for number, run in enumerate(runs, 1):
        if frozenset(run.blocking) != usual:
            print(f"  run {number} differs: {', '.join(sorted(run.blocking)) or 'none'}")
            for check in sorted(set(run.blocking) ^ usual):
                print(f"    {check}  {run.blocking.get(check, run.statuses.get(check, '?'))}")
    report_figures(runs)
    for check, counts in sorted(status_counts(runs).items()):
        if len(counts) > 1:
            print(
                f"  {check} status varied: "
                + ", ".join(f"{status} {n}" for status, n in counts.most_common())
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="runs on each stack (default 20)")
    parser.add_argument("--quick", action="store_true", help="5 runs on each stack")
    parser.add_argument(
        "--no-load", action="store_true", help="no CPU-bound process competing for a core"
    )
    parser.add_argument(
        "--warm-pool",
        action="store_true",
        help="each worker keeps 10 connections open, as after a burst of traffic",
    )
    parser.add_argument(
        "--results",
        type=Path,
        metavar="DIR",
        help="keep each run's JSON here (healthy-1.json, ..., flawed-1.json, ...)",
    )
    options = parser.parse_args()
    runs = 5 if options.quick else options.runs
    load = not options.no_load
    with contextlib.ExitStack() as cleanup:
        stack = start_stack(cleanup)
        results_dir = options.results or stack.work
        results_dir.mkdir(parents=True, exist_ok=True)
        version = stack.postgres.server_version_num
        print(
            f"readycheck verdict stability, {date.today()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, PostgreSQL {version // 10000}.{version % 10000}, "
            f"load average {os.getloadavg()[0]:.1f}; {runs} runs on each stack, "
            + ("a CPU-bound process competing for one core" if load else "no added load")
            + (", pools kept warm" if options.warm_pool else ""),
            flush=True,
        )
        with contextlib.ExitStack() as healthy_release:
            service = deploy(stack, HEALTHY, healthy_release, warm_pool=options.warm_pool)
            with cpu_load(stack.work, load):
                healthy = run_series(
                    "healthy", stack, environment(stack, service, HEALTHY), runs, results_dir
                )
        plant_flaws(stack)
        service = deploy(stack, FLAWED, cleanup, warm_pool=options.warm_pool)
        with cpu_load(stack.work, load):
            flawed = run_series(
                "flawed", stack, environment(stack, service, FLAWED), runs, results_dir
            )
        report_healthy(healthy)
        report_flawed(flawed)


if __name__ == "__main__":
    main()
