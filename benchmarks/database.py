"""Database checks: wall time of one check of each type, and connections held at most.

    python benchmarks/database.py [--runs N]

Starts a throwaway PostgreSQL and Redis on 127.0.0.1 (the test suite's fixtures: nothing to
set up), migrates a database to the test scripts' head, and runs profiles/database.yaml
against them: postgres.connectivity, then (each `needs: [db]`) postgres.pool with
probe_connections: 4, alembic.head, alembic.safety (nothing pending: no traffic sampled),
postgres.schema and postgres.indexes, concurrently, and redis.ping alongside.

Prints, over N runs (median, min, max):
  - `readycheck run` as a user runs it: wall time, process start included (target: under
    1 s in all), and the engine's own time in that process (RunResult.duration_ms), which
    includes importing the drivers the checks use;
  - the same profile run in this process once the drivers are imported: the time of the
    checks themselves;
  - what importing the drivers costs a fresh process (psycopg, alembic.script with
    SQLAlchemy, redis.asyncio);
  - the most connections readycheck held at once, counted server-side: a separate session
    samples pg_stat_activity (application_name = 'readycheck') about once a millisecond
    while the runs go on (target: one per PostgreSQL check plus probe_connections = 10).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from tests.servers.alembic_migrations import SCRIPTS, upgrade  # noqa: E402
from tests.servers.postgres import PostgresServer  # noqa: E402
from tests.servers.redis import RedisServer  # noqa: E402

from readycheck.engine import Engine  # noqa: E402
from readycheck.profile import load_profile  # noqa: E402

PROFILE = REPO / "profiles" / "database.yaml"
POSTGRES_CHECKS = 6
PROBE_CONNECTIONS = 4
WALL_TARGET_S = 1.0
DRIVERS = "import psycopg, alembic.script, redis.asyncio"


class ConnectionSampler(threading.Thread):
    """Counts readycheck's sessions in pg_stat_activity about once a millisecond."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.most = 0
        self.samples = 0
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, application_name="bench-sampler") as c:
            self.ready.set()
            while not self.stop.is_set():
                (count,) = c.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'readycheck'"
                ).fetchone() or (0,)
                self.most = max(self.most, int(count))
                self.samples += 1
                # A breath between samples, so that the sampler does not take a core from
                # the run it measures; a session lives far longer than this.
                time.sleep(0.001)


@contextmanager
def sampling(dsn: str) -> Iterator[ConnectionSampler]:
    sampler = ConnectionSampler(dsn)
    sampler.start()
    sampler.ready.wait(10)
    try:
        yield sampler
    finally:
        sampler.stop.set()
        sampler.join(10)


def cli_run(env: dict[str, str], folder: Path) -> tuple[float, float, dict[str, str]]:
    """One `readycheck run` in a fresh process: wall time, engine time, statuses."""
    output = folder / "run.json"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "readycheck", "run", str(PROFILE), "--json", str(output), "-q"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the profile did not pass:\n{done.stdout}\n{done.stderr}")
    document = json.loads(output.read_text())
    statuses = {check["id"]: check["status"] for check in document["checks"]}
    return wall, document["duration_ms"] / 1000, statuses


def warm_run(environ: dict[str, str]) -> float:
    """The profile through the engine in this process (drivers imported by now)."""
    profile = load_profile(PROFILE, environ=environ)
    started = time.perf_counter()
    result = asyncio.run(Engine(profile).run())
    took = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"the profile did not pass: {[c.summary for c in result.checks]}")
    return took


def import_cost() -> float:
    code = f"import time; t = time.perf_counter(); {DRIVERS}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(done.stdout.strip())


def line(label: str, values: list[float], note: str = "") -> None:
    print(
        f"{label:<46} median {statistics.median(values):6.3f}s  "
        f"min {min(values):6.3f}s  max {max(values):6.3f}s  {note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    options = parser.parse_args()
    postgres = PostgresServer.start(label="bench")
    redis = RedisServer.start(label="bench")
    try:
        database = postgres.create_database("bench")
        upgrade(database.dsn, "heads")
        environ = {
            "DATABASE_URL": database.dsn,
            "REDIS_URL": redis.url(),
            "ALEMBIC_SCRIPT_LOCATION": str(SCRIPTS),
        }
        env = {**os.environ, **environ, "PYTHONPATH": str(REPO)}
        walls: list[float] = []
        cold: list[float] = []
        warm: list[float] = []
        imports: list[float] = []
        with tempfile.TemporaryDirectory() as folder, sampling(database.superuser_dsn) as sampler:
            for _ in range(options.runs):
                wall, took, statuses = cli_run(env, Path(folder))
                walls.append(wall)
                cold.append(took)
            warm_run(environ)  # imports the drivers here
            warm.extend(warm_run(environ) for _ in range(options.runs))
        imports.extend(import_cost() for _ in range(options.runs))

        expected = POSTGRES_CHECKS + PROBE_CONNECTIONS
        print(
            f"readycheck database benchmark, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, PostgreSQL {postgres.server_version_num}, load "
            f"average {os.getloadavg()[0]:.1f}, {options.runs} runs of profiles/database.yaml"
        )
        print(f"checks: {', '.join(f'{k} {v}' for k, v in statuses.items())}")
        verdict = "ok" if statistics.median(walls) < WALL_TARGET_S else "OVER"
        line(
            "readycheck run: wall, process included",
            walls,
            f"target < {WALL_TARGET_S:.0f} s [{verdict}]",
        )
        line("readycheck run: engine (imports included)", cold)
        line("engine, drivers already imported", warm)
        line("importing the drivers in a fresh process", imports, f"({DRIVERS})")
        print(
            f"{'connections held at once (pg_stat_activity)':<46} max {sampler.most} "
            f"({sampler.samples} samples)  target <= {expected} = {POSTGRES_CHECKS} checks + "
            f"{PROBE_CONNECTIONS} probes [{'ok' if sampler.most <= expected else 'OVER'}]"
        )
    finally:
        redis.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
