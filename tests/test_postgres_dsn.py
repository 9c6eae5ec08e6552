"""The DSNs people paste from their application's settings, accepted by every database
check, and the ones libpq would refuse, caught by `validate` with the profile line and
without the password."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from readycheck.checks.postgres.dsn import PostgresDsn
from readycheck.engine import Engine
from readycheck.params import CheckParams
from readycheck.profile import load_profile
from readycheck.registry import Registry
from readycheck.results import Status
from tests.conftest import CliResult
from tests.servers.alembic_migrations import SCRIPTS, upgrade
from tests.servers.postgres import PgDatabase

Cli = Callable[..., CliResult]

# What each form starts with, in place of the libpq URL's postgresql://.
FORMS = {
    "sqlalchemy-psycopg": "postgresql+psycopg://",
    "sqlalchemy-psycopg2": "postgresql+psycopg2://",
    "sqlalchemy-asyncpg": "postgresql+asyncpg://",
    "postgres-scheme": "postgres://",
    "libpq-url": "postgresql://",
}


def _database_checks(dsn: str) -> list[dict[str, object]]:
    """Every built-in database check type, on one DSN."""
    return [
        {"id": "db", "type": "postgres.connectivity", "with": {"dsn": dsn}},
        {"id": "pool", "type": "postgres.pool", "with": {"dsn": dsn, "pool_size": 1}},
        {"id": "schema", "type": "postgres.schema", "with": {"dsn": dsn, "tables": ["orders"]}},
        {
            "id": "indexes",
            "type": "postgres.indexes",
            "with": {"dsn": dsn, "indexes": [{"table": "orders", "columns": ["account_id"]}]},
        },
        {
            "id": "migrations",
            "type": "alembic.head",
            "with": {"dsn": dsn, "script_location": str(SCRIPTS)},
        },
    ]


@pytest.mark.parametrize("form", list(FORMS))
def test_every_database_check_connects_through_each_dsn_form(
    pg_database: PgDatabase, tmp_path: Path, form: str
) -> None:
    upgrade(pg_database.dsn, "heads")
    dsn = FORMS[form] + pg_database.dsn.removeprefix("postgresql://")
    if form == "sqlalchemy-asyncpg":
        dsn += "?ssl=disable"  # asyncpg's spelling of sslmode
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump({"name": "it", "checks": _database_checks(dsn)}))
    run = asyncio.run(Engine(load_profile(path, environ={})).run())
    for result in run.checks:
        assert result.status is Status.PASS, (result.id, result.summary, result.evidence)
        readings = [line for line in result.evidence if line.startswith("DSN: ")]
        if form.startswith("sqlalchemy-"):
            driver = form.removeprefix("sqlalchemy-")
            expected = (
                f"DSN: a SQLAlchemy URL, read as libpq's postgresql:// (driver +{driver} removed)"
            )
            if driver == "asyncpg":
                expected += "; asyncpg's ssl=disable read as sslmode=disable"
            assert readings == [expected], result.id
        else:
            assert readings == [], result.id


def test_a_key_value_dsn_reaches_every_database_check(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    upgrade(pg_database.dsn, "heads")
    dsn = make_conninfo("", **conninfo_to_dict(pg_database.dsn))
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump({"name": "it", "checks": _database_checks(dsn)}))
    run = asyncio.run(Engine(load_profile(path, environ={})).run())
    assert {result.id: result.status for result in run.checks} == dict.fromkeys(
        ["db", "pool", "schema", "indexes", "migrations"], Status.PASS
    )


def test_a_sqlalchemy_url_password_shows_in_no_output(
    cli: Cli, pg_database: PgDatabase, tmp_path: Path
) -> None:
    password = pg_database.server.app_password
    dsn = "postgresql+asyncpg://" + pg_database.dsn.removeprefix("postgresql://")
    path = tmp_path / "profile.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "it",
                "checks": [{"id": "db", "type": "postgres.connectivity", "with": {"dsn": dsn}}],
            }
        )
    )
    report = tmp_path / "run.json"
    result = cli("run", path, "--json", report)
    assert result.exit_code == 0, result.output
    written = report.read_text()
    assert json.loads(written)["checks"][0]["status"] == "PASS"
    assert password not in written + result.output


def test_asyncpg_ssl_is_renamed_in_the_query_only() -> None:
    # A "?" in the password belongs to it (libpq reads userinfo up to the "@").
    dsn = PostgresDsn("postgresql+asyncpg://u:p?ssl=x@h/db?ssl=require&application_name=a")
    assert dsn.reveal() == "postgresql://u:p?ssl=x@h/db?sslmode=require&application_name=a"
    assert dsn.reading == (
        "a SQLAlchemy URL, read as libpq's postgresql:// (driver +asyncpg removed); "
        "asyncpg's ssl=require read as sslmode=require"
    )
    assert PostgresDsn("postgresql://u:p@h/db").reading is None
    assert "postgresql+asyncpg://u:p?ssl=x@h/db?ssl=require&application_name=a" in (
        dsn.redaction_values()
    )


# -- caught by validate ---------------------------------------------------------------

MALFORMED = {
    "unknown-keyword": (
        "host=127.0.0.1 sslmod=require password={password}",
        'unknown connection option "sslmod"; did you mean sslmode?',
    ),
    "unknown-url-parameter": (
        "postgresql://app:{password}@127.0.0.1/app?sslmod=require",
        'unknown connection option "sslmod"; did you mean sslmode?',
    ),
    "a-driver-parameter": (
        "postgresql+asyncpg://app:{password}@127.0.0.1/app?prepared_statement_cache_size=0",
        'unknown connection option "prepared_statement_cache_size"',
    ),
    "setting-without-equals": (
        "host=127.0.0.1 password={password} user",
        'a key=value setting lacks its "="',
    ),
    "space-in-url": (
        "postgresql://app:{password} x@127.0.0.1/app",
        "a URL may not contain spaces: percent-encode them (%20)",
    ),
    "unclosed-quote": ("host=127.0.0.1 password='{password}", "a quoted value is not closed"),
    "slash-in-password": (
        "postgresql://app:{password}/x@127.0.0.1/app",
        "the port is not a number from 1 to 65535 (a / or : in the password must be "
        "percent-encoded: %2F, %3A)",
    ),
    "bad-sslmode": (
        "postgresql://app:{password}@127.0.0.1/app?sslmode=required",
        "sslmode has an unknown value (valid: disable, allow, prefer, require, verify-ca, "
        "verify-full)",
    ),
    "other-database": (
        "mysql://app:{password}@127.0.0.1/app",
        "a mysql:// URL is not a PostgreSQL one: write postgresql://",
    ),
    "broken-ipv6": ("postgresql://app:{password}@[::1/app", "the URL is malformed"),
}


@pytest.mark.parametrize("source", ["literal", "environment"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_dsn_libpq_would_refuse_is_a_profile_error_naming_its_line(
    cli: Cli, write_profile: Callable[..., Path], case: str, source: str
) -> None:
    template, problem = MALFORMED[case]
    password = f"canary-{secrets.token_hex(8)}"
    dsn = template.format(password=password)
    value = "${env:DATABASE_URL}" if source == "environment" else dsn
    path = write_profile(
        f"""
        checks:
          - id: db
            type: postgres.connectivity
            with:
              dsn: {json.dumps(value)}
        """
    )
    result = cli("validate", path, env={"DATABASE_URL": dsn})
    assert result.exit_code == 2, result.output
    assert (
        f"profile.yaml:5:12: checks[db].with.dsn: not a valid PostgreSQL connection string: "
        f"{problem}"
    ) in result.output
    assert password not in result.output


def test_run_refuses_a_malformed_dsn_before_connecting_to_anything(
    cli: Cli, write_profile: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_profile(
        """
        checks:
          - {id: db, type: postgres.connectivity, with: {dsn: "host=db.invalid sslmod=require"}}
        """
    )
    report = tmp_path / "run.json"
    result = cli("run", path, "--json", report)
    assert result.exit_code == 2, result.output
    assert 'unknown connection option "sslmod"' in result.output
    assert not report.exists()


def _database_types() -> list[str]:
    registry = Registry()
    return [
        check_type.name
        for check_type in registry.all()
        if issubclass(check_type.params, CheckParams)
        and getattr(check_type.params.model_fields.get("dsn"), "annotation", None) is PostgresDsn
    ]


@pytest.mark.parametrize("check_type", _database_types())
def test_every_database_check_type_refuses_an_unknown_keyword_at_validate(
    cli: Cli, write_profile: Callable[..., Path], check_type: str
) -> None:
    path = write_profile(
        f"""
        checks:
          - id: it
            type: {check_type}
            with:
              dsn: "postgresql://app:hunter22@db.invalid/app?sslmod=require"
        """
    )
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert (
        'checks[it].with.dsn: not a valid PostgreSQL connection string: unknown connection option "sslmod"'
        in result.output
    )
    assert "hunter22" not in result.output
