"""alembic.safety against a real PostgreSQL: the test scripts migrated to 0003, then one
pending revision per rule (tests/servers/alembic_safety/), with orders filled to sizes on
both sides of the thresholds (the rules read reltuples after ANALYZE, so a few thousand
rows and a low max_rows stand for a large table)."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Any

import psycopg
import pytest

from readycheck.results import CheckResult, Status
from tests.database_checks import run_check
from tests.servers.alembic_migrations import SCRIPTS, pending_history, upgrade
from tests.servers.postgres import PgDatabase

ORDERS = 3000
LARGE = {"max_rows": 1000}  # orders (3000 rows) is large, accounts (20) is not
SMALL = {"max_rows": 1_000_000}


def _migrated(database: PgDatabase, tmp_path: Path, *revisions: str, orders: int = ORDERS) -> Path:
    """The test scripts plus ``revisions`` pending; the database at 0003, filled, analyzed."""
    scripts = pending_history(tmp_path / "scripts", *revisions)
    upgrade(database.dsn, "0003", script_location=scripts)
    database.execute(
        "INSERT INTO accounts (email) SELECT 'user' || g || '@example.com'"
        " FROM generate_series(1, 20) g"
    )
    database.execute(
        "INSERT INTO orders (account_id, total_cents) SELECT 1 + g %% 20, g * 100"
        " FROM generate_series(1, %s) g",
        (orders,),
    )
    database.execute("ANALYZE")
    return scripts


def _safety(
    tmp_path: Path, database: PgDatabase, scripts: Path, timeout: str = "30s", **params: Any
) -> CheckResult:
    return run_check(
        tmp_path,
        "alembic.safety",
        {
            "dsn": database.dsn,
            "script_location": str(scripts),
            "traffic_window": "0s",
            **params,
        },
        timeout=timeout,
    )


def _rules(result: CheckResult) -> dict[str, str]:
    """rule -> status, from the structured findings."""
    return {f["rule"]: f["status"] for f in result.data["findings"]}


def _line(result: CheckResult, fragment: str) -> str:
    """The evidence line of the statement (or note) that contains ``fragment``."""
    lines = [line for line in result.evidence if line.startswith(("FAIL ", "WARN "))]
    found = [line for line in lines if fragment in line]
    found += [line for line in result.evidence if fragment in line and line not in found]
    assert found, f"no evidence line with {fragment!r}:\n" + "\n".join(result.evidence)
    return found[0]


# -- nothing to do, or nothing unsafe ----------------------------------------------------


def test_a_database_at_head_passes_with_nothing_pending(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    upgrade(pg_database.dsn, "heads")
    result = _safety(tmp_path, pg_database, SCRIPTS)
    assert result.status is Status.PASS, result.summary
    assert result.summary == "no migration pending (database at 0003 (index orders.account_id))"


def test_the_clean_history_passes(pg_database: PgDatabase, tmp_path: Path) -> None:
    """SET lock_timeout, a nullable column, CREATE INDEX CONCURRENTLY in an
    autocommit_block: safe on a large table."""
    scripts = _migrated(pg_database, tmp_path, "clean")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.status is Status.PASS, "\n".join([result.summary, *result.evidence])
    assert result.summary == (
        "1 pending revision, 3 statements: none would block the application for long at "
        "the current sizes"
    )
    assert result.evidence[0] == (
        "database at 0003 (index orders.account_id); pending, in apply order: "
        "0004 (add orders.note and index it, the safe way)"
    )
    assert result.evidence[1].startswith("3 statements rendered offline (env.py not run); ")


def test_a_database_without_a_version_table_has_every_revision_pending_on_new_tables(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = _safety(tmp_path, pg_database, SCRIPTS)
    assert result.status is Status.PASS, result.summary
    assert result.evidence[0].startswith(
        "no version table alembic_version: every revision is pending; pending, in apply "
        "order: 0001 (create table accounts), 0002"
    )
    assert result.metrics["pending"] == 3


def test_a_database_ahead_of_the_scripts_warns_that_nothing_can_be_analysed(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    upgrade(pg_database.dsn, "heads")
    older = pending_history(tmp_path / "older")
    for revision in (older / "versions").glob("0003_*.py"):
        revision.unlink()
    result = _safety(tmp_path, pg_database, older)
    assert result.status is Status.WARN
    assert result.summary.startswith(
        "the database is at 0003, which these scripts do not know (it is ahead of this code"
    )


# -- each rule, weighed by the table's size ------------------------------------------------


def test_an_index_built_without_concurrently_fails_on_a_large_table(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "index_not_concurrent")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.status is Status.FAIL, result.summary
    assert result.summary.startswith(
        "1 pending statement unsafe at the current sizes: 0004 CREATE INDEX on orders (3,000 rows, "
    )
    assert "[index-not-concurrent]" in result.summary
    line = _line(result, "CREATE INDEX ix_orders_created_at")
    assert line.startswith("FAIL 0004 (index orders.created_at) · `CREATE INDEX")
    assert "takes SHARE on orders, blocking writes (orders: about 3,000 rows, " in line
    assert "writes to orders wait while the index builds (it scans " in line
    assert "safer: CREATE INDEX CONCURRENTLY outside a transaction: `with " in line
    assert "op.get_context().autocommit_block()" in (result.remediation or "")
    assert result.metrics["blocking"] == 1


def test_the_same_index_on_a_small_table_warns(pg_database: PgDatabase, tmp_path: Path) -> None:
    scripts = _migrated(pg_database, tmp_path, "index_not_concurrent")
    result = _safety(tmp_path, pg_database, scripts, **SMALL)
    assert result.status is Status.WARN, result.summary
    assert result.summary.startswith(
        "1 finding in 1 pending revision, none blocking at the current sizes: 0004 CREATE "
        "INDEX on orders (3,000 rows"
    )


def test_the_size_threshold_counts_bytes_too(pg_database: PgDatabase, tmp_path: Path) -> None:
    scripts = _migrated(pg_database, tmp_path, "index_not_concurrent")
    result = _safety(tmp_path, pg_database, scripts, max_rows=1_000_000, max_size="100KB")
    assert result.status is Status.FAIL, result.summary


def test_concurrently_inside_the_transaction_fails_as_the_migration_would(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "concurrently_in_transaction")
    result = _safety(tmp_path, pg_database, scripts, **SMALL)
    assert result.status is Status.FAIL, result.summary
    assert _rules(result) == {"concurrently-in-transaction": "FAIL"}
    assert "cannot run inside a transaction block" in _line(result, "CONCURRENTLY")


def test_a_not_null_column_without_a_default_fails_on_a_table_with_rows(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "add_column_not_null")
    result = _safety(tmp_path, pg_database, scripts, **SMALL)
    assert result.status is Status.FAIL, result.summary
    assert _rules(result) == {"add-column-not-null": "FAIL"}
    assert result.summary.startswith(
        "1 pending statement unsafe at the current sizes: 0004 ALTER TABLE on orders (3,000 rows, "
    )
    assert result.summary.endswith(") will fail [add-column-not-null]")


def test_a_not_null_column_on_an_empty_table_is_fine(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "add_column_not_null", orders=0)
    pg_database.execute("VACUUM orders")  # as an empty production table would be
    result = _safety(tmp_path, pg_database, scripts, **SMALL)
    assert result.status is Status.PASS, "\n".join([result.summary, *result.evidence])


def test_a_volatile_default_rewrites_the_table(pg_database: PgDatabase, tmp_path: Path) -> None:
    scripts = _migrated(pg_database, tmp_path, "add_column_volatile_default")
    large = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert large.status is Status.FAIL, large.summary
    assert _rules(large) == {"add-column-rewrite": "FAIL"}
    line = _line(large, "gen_random_uuid()")
    assert "with a volatile default: every row is rewritten under ACCESS EXCLUSIVE" in line
    assert "(it rewrites " in line
    small = _safety(tmp_path, pg_database, scripts, **SMALL)
    assert _rules(small) == {"add-column-rewrite": "WARN"}


def test_a_type_change_that_rewrites_fails_on_a_large_table(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "alter_type_rewrite")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.status is Status.FAIL, result.summary
    assert _rules(result) == {"alter-column-type-rewrite": "FAIL"}
    assert "changes the type of orders.total_cents from bigint: PostgreSQL rewrites" in _line(
        result, "NUMERIC(14, 2)"
    )


def test_widening_a_varchar_is_done_in_place_as_the_live_column_shows(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "widen_varchar")
    pg_database.execute("ALTER TABLE accounts ADD COLUMN name varchar(50)")
    result = _safety(tmp_path, pg_database, scripts, max_rows=1)
    assert result.status is Status.PASS, "\n".join([result.summary, *result.evidence])
    # squawk flags every type change; with the live column's type, ours knows better.
    if "linted by squawk" in result.evidence[1]:
        assert any(
            "squawk's changing-column-type" in line and "not counted" in line
            for line in result.evidence
        )
    narrower = pending_history(tmp_path / "narrower", "widen_varchar")
    revision = next((narrower / "versions").glob("0004_*.py"))
    revision.write_text(revision.read_text().replace("sa.String(100)", "sa.String(20)"))
    shrinking = _safety(tmp_path, pg_database, narrower, max_rows=1)
    assert _rules(shrinking) == {"alter-column-type-rewrite": "FAIL"}
    assert "from character varying(50)" in _line(shrinking, "VARCHAR(20)")


def test_constraints_validated_at_once_fail_and_not_valid_ones_pass(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "constraint_not_valid")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.status is Status.FAIL, result.summary
    assert _rules(result) == {"constraint-not-valid": "FAIL"}
    assert "writes to orders and accounts wait while every row is checked" in _line(
        result, "FOREIGN KEY"
    )
    assert "is read in full under ACCESS EXCLUSIVE" in _line(result, "CHECK (total_cents >= 0)")
    later = pending_history(tmp_path / "later", "validated_later")
    fine = _safety(tmp_path, pg_database, later, **LARGE)
    assert fine.status is Status.PASS, "\n".join([fine.summary, *fine.evidence])


def test_set_not_null_scans_unless_a_validated_check_covers_it(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "set_not_null")
    pg_database.execute("ALTER TABLE orders ADD COLUMN note text DEFAULT 'n/a'")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert _rules(result) == {"set-not-null-scan": "FAIL"}
    pg_database.execute("ALTER TABLE orders ADD CONSTRAINT note_present CHECK (note IS NOT NULL)")
    covered = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert covered.status is Status.PASS, "\n".join([covered.summary, *covered.evidence])


def test_drops_and_renames_are_questions_for_the_reviewer(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "drop_and_rename")
    pg_database.execute("ALTER TABLE orders ADD COLUMN legacy_code text")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.status is Status.WARN, result.summary
    assert _rules(result) == {"drop-or-rename": "WARN", "several-access-exclusive": "WARN"}
    assert (
        "drops column orders.legacy_code: does the release running now still read or write it?"
        in _line(result, "DROP COLUMN")
    )
    assert "renames column accounts.email to login" in _line(result, "RENAME email TO login")


def test_a_missing_lock_timeout_warns_unless_the_environment_sets_one(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "no_lock_timeout")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.status is Status.WARN, result.summary
    assert _rules(result) == {"lock-timeout-missing": "WARN"}
    assert "`op.execute(\"SET lock_timeout = '5s'\")` before it" in (result.remediation or "")
    assumed = _safety(tmp_path, pg_database, scripts, assume_lock_timeout=True, **LARGE)
    assert assumed.status is Status.PASS, assumed.summary


def test_access_exclusive_on_two_tables_in_one_transaction_warns(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "several_access_exclusive")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert _rules(result) == {"several-access-exclusive": "WARN"}
    assert "while the same transaction already holds it on orders" in _line(result, "nickname")


def test_a_data_migration_warns_on_a_large_table_only(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "data_migration")
    large = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert _rules(large) == {"data-migration": "WARN"}
    small = _safety(tmp_path, pg_database, scripts, **SMALL)
    assert small.status is Status.PASS, small.summary


def test_of_two_pending_revisions_the_evidence_names_the_unsafe_one(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "clean", "index_not_concurrent")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.status is Status.FAIL, result.summary
    assert "0005 CREATE INDEX on orders" in result.summary
    assert [f["revision"] for f in result.data["findings"]] == ["0005"]
    assert _line(result, "CREATE INDEX ix_orders_created_at").startswith(
        "FAIL 0005 (index orders.created_at)"
    )


def test_a_session_holding_a_lock_for_long_makes_even_a_brief_lock_fail(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "clean")
    with psycopg.connect(pg_database.dsn, application_name="report-job") as reader:
        reader.execute("SELECT count(*) FROM orders").fetchone()  # ACCESS SHARE, kept
        pid = reader.info.backend_pid
        result = _safety(tmp_path, pg_database, scripts, long_transaction="0s", **SMALL)
        ordinary = _safety(tmp_path, pg_database, scripts, **SMALL)
        reader.rollback()
    assert result.status is Status.FAIL, result.summary
    assert _rules(result) == {"waits-for-session": "FAIL"}
    line = _line(result, "ADD COLUMN note")
    assert (
        f"which pid {pid} (application report-job, idle in transaction, transaction open " in line
    )
    assert "holds as AccessShareLock" in line
    # Held for less than long_transaction (10s): the table's ordinary traffic.
    assert ordinary.status is Status.PASS, ordinary.summary


def test_locks_of_sessions_the_role_may_not_see_into_are_said_to_be_unknown(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "clean")
    with psycopg.connect(pg_database.superuser_dsn) as admin:
        admin.execute("SELECT count(*) FROM orders").fetchone()
        result = _safety(tmp_path, pg_database, scripts, long_transaction="0s", **SMALL)
        admin.rollback()
    # pg_stat_activity hides another role's transaction start from `app`: not counted as
    # blocking, but said.
    assert result.status is Status.PASS, result.summary
    assert result.data["findings"] == []
    assert _line(result, "of other roles holds locks on orders").startswith(
        "1 session of other roles holds locks on orders for how long this role may not see"
    )


def test_traffic_is_sampled_over_the_window(pg_database: PgDatabase, tmp_path: Path) -> None:
    scripts = _migrated(pg_database, tmp_path, "index_not_concurrent")
    result = _safety(tmp_path, pg_database, scripts, traffic_window="200ms", **SMALL)
    assert "sequential + " in _line(result, "CREATE INDEX")
    assert "index scans/s, " in _line(result, "CREATE INDEX")
    totals = _safety(tmp_path, pg_database, scripts, **SMALL)
    assert "row writes since statistics were reset" in _line(totals, "CREATE INDEX")


# -- what cannot be rendered or parsed -----------------------------------------------------


def test_a_revision_that_needs_a_connection_is_named(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "needs_connection")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.status is Status.WARN, result.summary
    line = _line(result, "cannot be rendered offline")
    assert line.startswith("WARN 0004 (archive old orders, counting them first) · ")
    assert (
        "it needs a live database connection (op.get_bind() at versions/0004_needs_connection.py:"
        in line
    )
    assert "trace: true" in line
    # Rendering left Alembic's `op` as it was: the real upgrade still reaches the database.
    upgrade(pg_database.dsn, "heads", script_location=scripts)


def test_a_revision_whose_upgrade_raises_is_named_with_its_line(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "raises_in_upgrade")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.status is Status.WARN, result.summary
    assert (
        "upgrade() raised KeyError: 'column' at versions/0004_raises_in_upgrade.py:20 while rendered offline"
        in _line(result, "cannot be rendered")
    )


def test_a_revision_that_raises_on_import_is_an_error_naming_its_file_and_line(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = pending_history(tmp_path / "scripts", "raises_on_import")
    result = _safety(tmp_path, pg_database, scripts)
    assert result.status is Status.ERROR
    assert result.summary.endswith(
        "cannot be read: RuntimeError: APP_SETTINGS is not set (in "
        "versions/0004_raises_on_import.py:14)"
    )


def test_a_revision_that_calls_sys_exit_on_import_is_an_error_naming_its_file_and_line(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    """sys.exit() in a worker thread would travel up through asyncio and end readycheck
    with its code, no result and no outputs."""
    scripts = pending_history(tmp_path / "scripts", "raises_on_import")
    revision = next((scripts / "versions").glob("0004_*.py"))
    revision.write_text(revision.read_text().replace("raise RuntimeError(", "raise SystemExit("))
    result = _safety(tmp_path, pg_database, scripts)
    assert result.status is Status.ERROR, result.summary
    assert result.summary.endswith(
        "cannot be read: SystemExit: APP_SETTINGS is not set (in "
        "versions/0004_raises_on_import.py:14)"
    )


@pytest.mark.parametrize("trace", [False, True], ids=["offline", "traced"])
def test_a_revision_whose_upgrade_calls_sys_exit_is_named_with_its_line(
    pg_database: PgDatabase, tmp_path: Path, trace: bool
) -> None:
    scripts = _migrated(pg_database, tmp_path, "raises_in_upgrade")
    revision = next((scripts / "versions").glob("0004_*.py"))
    revision.write_text(
        revision.read_text().replace(
            "    settings: dict[str, str] = {}\n",
            "    settings: dict[str, str] = {}\n    raise SystemExit(3)\n",
        )
    )
    result = _safety(tmp_path, pg_database, scripts, timeout="60s", trace=trace, **LARGE)
    assert result.status is Status.WARN, result.summary
    assert (
        "upgrade() raised SystemExit: 3 at versions/0004_raises_in_upgrade.py:20 while "
        "rendered offline" in _line(result, "cannot be rendered")
    )
    if trace:
        note = next(line for line in result.evidence if line.startswith("trace: "))
        assert note.endswith("; the run stopped at 0004: SystemExit: 3"), note


def test_a_statement_the_parser_refuses_is_shown_as_unparsed(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "unparsed")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.status is Status.WARN, result.summary
    assert _rules(result) == {"unparsed": "WARN"}
    line = _line(result, "ADD COLUMN note text DEFAULT")
    assert "PostgreSQL's parser refused it (syntax error at or near" in line


# -- squawk present, absent, crashing -------------------------------------------------------


def test_squawk_runs_and_agrees_where_its_rules_overlap(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "index_not_concurrent")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.evidence[1].startswith(
        "2 statements rendered offline (env.py not run); linted by squawk 2."
    )
    assert result.evidence[1].endswith(" and readycheck's own rules")
    assert "squawk require-concurrent-index-creation agrees" in _line(result, "CREATE INDEX")


def test_squawk_rules_of_its_own_are_findings(pg_database: PgDatabase, tmp_path: Path) -> None:
    scripts = _migrated(pg_database, tmp_path, "index_not_concurrent")
    # A style rule left out by default, asked for here.
    result = _safety(tmp_path, pg_database, scripts, squawk_exclude=[], **SMALL)
    sources = {f["rule"]: f["source"] for f in result.data["findings"]}
    assert sources["index-not-concurrent"] == "readycheck"
    assert sources.get("squawk:require-statement-timeout") == "squawk"


def test_without_squawk_the_check_says_only_its_own_rules_ran(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "index_not_concurrent")
    result = _safety(
        tmp_path, pg_database, scripts, squawk=str(tmp_path / "no-squawk-here"), **LARGE
    )
    assert result.status is Status.FAIL, result.summary
    assert result.evidence[1] == (
        "2 statements rendered offline (env.py not run); readycheck's own rules only "
        f"(squawk not found ({tmp_path / 'no-squawk-here'}): pip install 'readycheck[migrations]')"
    )
    assert _rules(result) == {"index-not-concurrent": "FAIL"}


def test_a_crashing_squawk_leaves_readycheck_rules_alone(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "index_not_concurrent")
    fake = tmp_path / "squawk"
    fake.write_text("#!/bin/sh\necho \"thread 'main' panicked at src/main.rs:1:1\" >&2\nexit 101\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    result = _safety(tmp_path, pg_database, scripts, squawk=str(fake), **LARGE)
    assert result.status is Status.FAIL, result.summary
    assert result.evidence[1] == (
        "2 statements rendered offline (env.py not run); readycheck's own rules only "
        "(squawk failed (exit status 101: thread 'main' panicked at src/main.rs:1:1))"
    )
    assert _rules(result) == {"index-not-concurrent": "FAIL"}


# -- the trace ------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["catalogs", "pg_dump"])
def test_the_trace_confirms_the_locks_it_saw(
    pg_database: PgDatabase, tmp_path: Path, schema: str
) -> None:
    if schema == "pg_dump" and shutil.which("pg_dump") is None:
        from readycheck.checks.alembic.schema_copy import find_pg_dump

        if find_pg_dump() is None:
            pytest.skip("no pg_dump here")
    scripts = _migrated(pg_database, tmp_path, "constraint_not_valid")
    before = pg_database.execute(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass"
    )
    result = _safety(
        tmp_path, pg_database, scripts, timeout="60s", trace=True, trace_schema=schema, **LARGE
    )
    assert result.status is Status.FAIL, result.summary
    note = _line(result, "trace: ")
    assert "statements run on a throwaway PostgreSQL" in note
    assert ("from the catalogs" if schema == "catalogs" else "by pg_dump") in note
    assert note.endswith("then rolled back")
    assert "trace confirmed" in _line(result, "FOREIGN KEY")
    assert "trace confirmed" in _line(result, "CHECK (total_cents >= 0)")
    # Nothing was written to the checked database.
    after = pg_database.execute(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass"
    )
    assert after == before


def test_the_trace_sees_the_locks_of_a_revision_that_needs_a_connection(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    scripts = _migrated(pg_database, tmp_path, "needs_connection")
    result = _safety(tmp_path, pg_database, scripts, timeout="60s", trace=True, **LARGE)
    assert result.status is Status.WARN, result.summary
    assert _rules(result) == {"unrenderable": "WARN"}
    # Its SELECT and, the table being empty there, no UPDATE.
    assert "the trace ran 1 statement of it: ACCESS SHARE on orders" in _line(
        result, "cannot be rendered offline"
    )


def test_the_trace_sees_locks_the_sql_does_not_show(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    """Changing accounts.id's type rebuilds the foreign key orders holds on it."""
    scripts = _migrated(pg_database, tmp_path, "alter_referenced_key")
    result = _safety(tmp_path, pg_database, scripts, timeout="60s", trace=True, **LARGE)
    traced = [f for f in result.data["findings"] if f["source"] == "trace"]
    assert traced, "\n".join(result.evidence)
    assert traced[0]["table"] == "orders"
    assert "which its SQL alone does not show" in traced[0]["problem"]


def test_the_trace_says_why_it_did_not_run(
    pg_database: PgDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripts = _migrated(pg_database, tmp_path, "clean")
    monkeypatch.setenv("READYCHECK_PG_BINDIR", str(tmp_path / "no-postgres"))
    result = _safety(tmp_path, pg_database, scripts, trace=True, trace_schema="catalogs", **SMALL)
    assert result.status is Status.WARN, (result.summary, result.traceback)
    assert _line(result, "trace not run: ").endswith("has no postgres")


# -- the checked database ---------------------------------------------------------------


def test_analysis_takes_no_write_lock_and_writes_nothing(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    """The check's own session is read-only: the migration it analyses is not applied."""
    scripts = _migrated(pg_database, tmp_path, "index_not_concurrent")
    result = _safety(tmp_path, pg_database, scripts, **LARGE)
    assert result.status is Status.FAIL
    indexes = pg_database.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'orders'")
    assert ("ix_orders_created_at",) not in indexes
    assert pg_database.execute("SELECT version_num FROM alembic_version") == [("0003",)]
