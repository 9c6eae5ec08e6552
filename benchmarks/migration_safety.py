"""alembic.safety: the time to analyse a history of 50 pending revisions.

    python benchmarks/migration_safety.py [--runs N] [--no-trace]

Starts a throwaway PostgreSQL on 127.0.0.1 (the test suite's fixture), applies a first
revision that creates five tables and fills them (20,000 rows in all, ANALYZEd), and
leaves 50 revisions pending on top of it: a mix of what releases do (nullable columns
behind a lock_timeout, indexes with and without CONCURRENTLY, NOT VALID constraints then
validated, a type change, renames, new tables, a backfill), about 120 statements.

Prints, over N runs (median, min, max), for a one-check profile:
  - `readycheck run` as a user runs it: wall time, process start included;
  - the check itself in this process, once the libraries are imported;
each with `traffic_window: 0s` (no traffic sampling: the target, under 2 s) and with the
default 1s window (which adds the window); then one run with `trace: true` (a throwaway
server started, the schema copied and the revisions run), for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers.alembic_migrations import SCRIPTS, upgrade  # noqa: E402
from tests.servers.postgres import PostgresServer  # noqa: E402

from readycheck.engine import Engine  # noqa: E402
from readycheck.profile import load_profile  # noqa: E402

PENDING = 50
TARGET_S = 2.0
TABLES = ("accounts", "orders", "payments", "shipments", "events")

_HEADER = '''"""{message}

Revision ID: {revision}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down_literal}


def upgrade():
{body}
'''

_BASE = "\n".join(
    f"    op.create_table('{table}', sa.Column('id', sa.BigInteger, sa.Identity(), "
    "primary_key=True), sa.Column('account_id', sa.BigInteger, nullable=False), "
    "sa.Column('amount', sa.Integer, nullable=False), sa.Column('label', sa.String(40)), "
    "sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now()))"
    for table in TABLES
)


def _step(number: int) -> tuple[str, str]:
    """The message and upgrade() body of pending revision ``number`` (0-based)."""
    table = TABLES[number % len(TABLES)]
    timeout = "    op.execute(\"SET lock_timeout = '2s'\")\n"
    kind = number % 10
    if kind == 0:
        return f"add {table}.note{number}", timeout + (
            f"    op.add_column('{table}', sa.Column('note{number}', sa.Text))\n"
            f"    op.add_column('{table}', sa.Column('flag{number}', sa.Boolean))"
        )
    if kind == 1:
        return f"index {table}.amount", (
            "    with op.get_context().autocommit_block():\n"
            f"        op.create_index('ix_{table}_amount_{number}', '{table}', ['amount'],"
            " postgresql_concurrently=True)"
        )
    if kind == 2:
        return f"index {table}.created_at", timeout + (
            f"    op.create_index('ix_{table}_created_{number}', '{table}', ['created_at'])"
        )
    if kind == 3:
        return f"check {table}.amount", timeout + (
            f"    op.create_check_constraint('ck_{table}_{number}', '{table}', 'amount >= 0',"
            " postgresql_not_valid=True)\n"
            f"    op.execute('ALTER TABLE {table} VALIDATE CONSTRAINT ck_{table}_{number}')"
        )
    if kind == 4:
        return f"widen {table}.label", timeout + (
            f"    op.alter_column('{table}', 'label', type_=sa.String({40 + number}),"
            f" existing_type=sa.String({40 + number - 10 if number >= 10 else 40}))"
        )
    if kind == 5:
        return f"create table audit_{number}", (
            f"    op.create_table('audit_{number}', sa.Column('id', sa.BigInteger,"
            " primary_key=True), sa.Column('account_id', sa.BigInteger))\n"
            f"    op.create_index('ix_audit_{number}', 'audit_{number}', ['account_id'])"
        )
    if kind == 6:
        return f"backfill {table}.amount", (
            f"    op.execute('UPDATE {table} SET amount = amount WHERE id < 100')"
        )
    if kind == 7:
        return f"rename {table}.note{number - 7}", timeout + (
            f"    op.alter_column('{table}', 'note{number - 7}', "
            f"new_column_name='memo{number - 7}')"
        )
    if kind == 8:
        return f"amount of {table} becomes bigint", timeout + (
            f"    op.alter_column('{table}', 'amount', type_=sa.BigInteger,"
            " existing_type=sa.Integer)"
        )
    return f"comment on {table}", f"    op.execute(\"COMMENT ON TABLE {table} IS 'v{number}'\")"


def write_history(folder: Path) -> Path:
    versions = folder / "versions"
    versions.mkdir(parents=True)
    # The test scripts' env.py, which migrates the database at sqlalchemy.url.
    shutil.copy2(SCRIPTS / "env.py", folder / "env.py")
    steps = [("create the tables", _BASE)] + [_step(n) for n in range(PENDING)]
    for index, (message, body) in enumerate(steps, start=1):
        revision, down = f"{index:04d}", f"{index - 1:04d}"
        (versions / f"{revision}_step.py").write_text(
            _HEADER.format(
                message=message,
                revision=revision,
                down=down if index > 1 else "",
                down_literal=repr(down) if index > 1 else "None",
                body=body,
            )
        )
    return folder


def profile(folder: Path, dsn: str, **params: object) -> Path:
    path = folder / f"profile-{len(list(folder.glob('profile-*.yaml')))}.yaml"
    check = {
        "id": "safety",
        "type": "alembic.safety",
        "timeout": "60s",
        "with": {"dsn": dsn, "script_location": str(folder / "scripts"), **params},
    }
    path.write_text(yaml.safe_dump({"name": "bench", "checks": [check]}, sort_keys=False))
    return path


def cli_run(path: Path) -> tuple[float, dict[str, object]]:
    output = path.with_suffix(".json")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "readycheck", "run", str(path), "--json", str(output), "-q"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        check=False,
    )
    wall = time.perf_counter() - started
    check: dict[str, object] = json.loads(output.read_text())["checks"][0]
    return wall, check


def in_process(path: Path) -> float:
    loaded = load_profile(path, environ={})
    started = time.perf_counter()
    asyncio.run(Engine(loaded).run())
    return time.perf_counter() - started


def line(label: str, values: list[float], note: str = "") -> None:
    print(
        f"{label:<52} median {statistics.median(values):6.3f}s  "
        f"min {min(values):6.3f}s  max {max(values):6.3f}s  {note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-trace", action="store_true", help="skip the trace run")
    options = parser.parse_args()
    server = PostgresServer.start(label="bench")
    try:
        database = server.create_database("bench")
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            scripts = write_history(folder / "scripts")
            upgrade(database.dsn, "0001", script_location=scripts)
            for table in TABLES:
                database.execute(
                    f"INSERT INTO {table} (account_id, amount, label) "
                    "SELECT g % 100, g, 'x' FROM generate_series(1, 4000) g"
                )
            database.execute("ANALYZE")
            quiet = profile(folder, database.dsn, traffic_window="0s")
            sampled = profile(folder, database.dsn)
            print(
                f"readycheck alembic.safety benchmark, {os.cpu_count()} cores, Python "
                f"{platform.python_version()}, PostgreSQL {server.server_version_num}, load "
                f"average {os.getloadavg()[0]:.1f}, {options.runs} runs, {PENDING} pending "
                "revisions"
            )
            for label, path in (("traffic_window 0s", quiet), ("traffic_window 1s", sampled)):
                walls: list[float] = []
                checks: list[float] = []
                for _ in range(options.runs):
                    wall, check = cli_run(path)
                    walls.append(wall)
                in_process(path)  # imports the libraries here
                checks.extend(in_process(path) for _ in range(options.runs))
                target = f"target < {TARGET_S:.0f} s" if label.endswith("0s") else ""
                verdict = (
                    f" [{'ok' if statistics.median(walls) < TARGET_S else 'OVER'}]"
                    if target
                    else ""
                )
                line(f"readycheck run, {label}: wall, process included", walls, target + verdict)
                line(f"the check in this process, {label}", checks)
            print(f"  {check['status']}: {check['summary']}")
            print(f"  {check['metrics']}")
            if not options.no_trace:
                wall, check = cli_run(
                    profile(folder, database.dsn, traffic_window="0s", trace=True)
                )
                print(f"{'readycheck run, trace: true (one run)':<52} {wall:6.3f}s")
                print(f"  {check['status']}: {check['summary']}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
