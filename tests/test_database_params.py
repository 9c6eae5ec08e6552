"""The database and cache check types as a profile author meets them: parameters checked at
load time (exit 2 with the line), `readycheck explain`, no driver imported to validate,
and the example profile run for real."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from readycheck.registry import Registry
from tests.conftest import REPO, CliResult
from tests.servers.alembic_migrations import SCRIPTS, upgrade
from tests.servers.postgres import PgDatabase
from tests.servers.redis import RedisServer

TYPES = {
    "postgres.connectivity": "readycheck.checks.postgres.connectivity",
    "postgres.pool": "readycheck.checks.postgres.pool",
    "postgres.schema": "readycheck.checks.postgres.schema",
    "postgres.indexes": "readycheck.checks.postgres.indexes",
    "postgres.query": "readycheck.checks.postgres.query",
    "alembic.head": "readycheck.checks.alembic.head",
    "alembic.safety": "readycheck.checks.alembic.safety",
    "redis.ping": "readycheck.checks.redis",
}
DRIVERS = ("psycopg", "sqlalchemy", "alembic", "redis", "pglast")
EXAMPLE = REPO / "profiles" / "database.yaml"

Cli = Callable[..., CliResult]


def test_the_check_modules_and_their_parameter_models_import_no_driver() -> None:
    code = (
        "import sys\n"
        f"for module in {list(TYPES.values())!r}:\n"
        "    __import__(module)\n"
        "from readycheck.registry import Registry\n"
        f"for name in {list(TYPES)!r}:\n"
        "    Registry().get(name).params.model_json_schema()\n"
        f"print(','.join(d for d in {DRIVERS!r} if d in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("check_type", list(TYPES))
def test_every_type_and_parameter_is_explained(cli: Cli, check_type: str) -> None:
    result = cli("explain", check_type)
    assert result.exit_code == 0, result.output
    models = [Registry().get(check_type).params]
    for model in models:
        for name, field in model.model_fields.items():
            assert field.description, f"{check_type}: {name} has no description"
            assert (field.alias or name) in result.stdout


def test_the_index_spec_is_explained_too(cli: Cli) -> None:
    result = cli("explain", "postgres.indexes")
    assert "IndexSpec" in result.stdout
    for field in ("table", "columns", "unique", "method", "where", "name"):
        assert field in result.stdout


@pytest.mark.parametrize(
    ("check_type", "params", "line", "message"),
    [
        ("postgres.pool", "pool_size: lots", 6, "pool_size"),
        ("postgres.connectivity", "min_version: fifteen", 6, "min_version"),
        ("postgres.connectivity", "connect_timeout: 5", 6, "connect_timeout"),
        ("postgres.indexes", "indexes: [{table: t, columns: []}]", 6, "columns"),
        ("postgres.indexes", "indexes: [{table: t, columns: [a], method: btre}]", 6, "method"),
        ("postgres.schema", "schema: public", 5, "name at least one of tables"),
        ("alembic.head", "{version_table: v}", 4, "give either"),
        ("redis.ping", "min_version: 7.10", 6, "write the version as a string"),
        ("redis.ping", "expect_role: leader", 6, "expect_role"),
    ],
)
def test_a_parameter_of_the_wrong_type_is_a_profile_error_with_its_line(
    cli: Cli,
    write_profile: Callable[..., Path],
    check_type: str,
    params: str,
    line: int,
    message: str,
) -> None:
    secret = "postgresql://app:pw@db/app" if check_type != "redis.ping" else "redis://:pw@r:6379"
    key = "url" if check_type == "redis.ping" else "dsn"
    block = (
        f"    with: {params[:-1]}, {key}: '{secret}'}}\n"
        if params.startswith("{")
        else f"    with:\n      {key}: '{secret}'\n      {params}\n"
    )
    path = write_profile(f"checks:\n  - id: it\n    type: {check_type}\n{block}")
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert f"profile.yaml:{line}:" in result.output
    assert message in result.output
    assert "pw@" not in result.output


def test_the_example_profile_validates(cli: Cli) -> None:
    result = cli(
        "validate",
        EXAMPLE,
        env={
            "DATABASE_URL": "postgresql://app:pw@db/app",
            "REDIS_URL": "redis://:pw@r:6379/0",
            "ALEMBIC_SCRIPT_LOCATION": str(SCRIPTS),
        },
    )
    assert result.exit_code == 0, result.output
    for check_type in TYPES:
        assert check_type in result.stdout


def test_the_example_profile_is_ready_against_a_migrated_database(
    cli: Cli, pg_database: PgDatabase, redis_server: RedisServer, tmp_path: Path
) -> None:
    upgrade(pg_database.dsn, "heads")
    output = tmp_path / "run.json"
    result = cli(
        "run",
        EXAMPLE,
        "--json",
        output,
        env={
            "DATABASE_URL": pg_database.dsn,
            "REDIS_URL": redis_server.url(),
            "ALEMBIC_SCRIPT_LOCATION": str(SCRIPTS),
        },
    )
    document = json.loads(output.read_text())
    statuses = {check["id"]: check["status"] for check in document["checks"]}
    assert statuses == dict.fromkeys(
        [
            "db",
            "pool",
            "migrations",
            "migration-safety",
            "schema",
            "indexes",
            "no-negative-totals",
            "cache",
        ],
        "PASS",
    ), result.output
    assert result.exit_code == 0
    assert pg_database.server.app_password not in output.read_text() + result.output
    assert redis_server.password not in output.read_text() + result.output
