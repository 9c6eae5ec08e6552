"""postgres.query against a real server: statements refused when the profile loads, the
expectations (rows, value, equals), bound parameters, capped evidence, bounded memory,
and a function that writes refused by the read-only session."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from readycheck.engine import Engine
from readycheck.profile import load_profile
from readycheck.results import Status
from tests.database_checks import run_check, run_everywhere, write_check_profile
from tests.servers.postgres import PgDatabase


def _query(tmp_path: Path, database: PgDatabase, sql: str, **params: Any) -> Any:
    return run_check(tmp_path, "postgres.query", {"dsn": database.dsn, "sql": sql, **params})


@pytest.fixture
def webhooks(pg_database: PgDatabase) -> PgDatabase:
    pg_database.execute(
        "CREATE TABLE webhooks (id int PRIMARY KEY, url text NOT NULL, failures int NOT NULL,"
        " api_token text)"
    )
    pg_database.execute(
        "INSERT INTO webhooks VALUES (1, 'https://a.example/hook', 0, 'tok-aaaaaaaa'),"
        " (2, 'https://b.example/hook', 7, 'tok-bbbbbbbb'), (3, 'https://c.example/hook', 12, NULL)"
    )
    pg_database.execute(
        "CREATE VIEW v_degraded_webhooks AS SELECT id, url FROM webhooks WHERE failures > 5"
    )
    return pg_database


# -- statements refused when the profile loads ------------------------------------------


def _load_error(tmp_path: Path, sql: str, **params: Any) -> str:
    from readycheck.errors import ProfileError

    path = write_check_profile(
        tmp_path, "postgres.query", {"dsn": "postgresql://app@db.invalid/app", "sql": sql, **params}
    )
    with pytest.raises(ProfileError) as raised:
        load_profile(path, environ={})
    return str(raised.value)


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        ("DELETE FROM webhooks WHERE failures > 5", "DELETE does not only read"),
        ("SELECT 1; SELECT 2", "2 statements (the second starts at line 1, column 11)"),
        ("SELECT 1;\nDROP TABLE webhooks", "2 statements (the second starts at line 2, column 1)"),
        (
            "WITH gone AS (DELETE FROM webhooks RETURNING id) SELECT count(*) FROM gone",
            "it contains DELETE, which writes",
        ),
        (
            "EXPLAIN ANALYZE UPDATE webhooks SET failures = 0",
            "EXPLAIN of UPDATE does not only read",
        ),
        ("SELECT * INTO copy_of_webhooks FROM webhooks", "SELECT … INTO creates a table"),
        ("SELECT * FROM webhooks FOR UPDATE", "FOR UPDATE locks the rows it reads"),
        ("SET statement_timeout = 0", "SET does not only read"),
        ("CREATE INDEX ON webhooks (url)", "CREATE INDEX does not only read"),
        (
            "SELEC id FROM webhooks",
            'not valid SQL: syntax error at or near "SELEC" (line 1, column 1)',
        ),
        ("-- only a comment", "the statement is empty"),
    ],
    ids=[
        "delete",
        "two-statements",
        "a-write-after-a-select",
        "data-modifying-cte",
        "explain-analyze-update",
        "select-into",
        "for-update",
        "set",
        "create-index",
        "syntax-error",
        "empty",
    ],
)
def test_a_statement_that_does_not_only_read_is_refused_at_load(
    tmp_path: Path, sql: str, said: str
) -> None:
    message = _load_error(tmp_path, sql, rows=0)
    assert said in message
    assert "profile.yaml" in message  # where, as every load error says


def test_validate_refuses_a_delete_naming_the_field(
    tmp_path: Path, readycheck_process: Any
) -> None:
    path = write_check_profile(
        tmp_path,
        "postgres.query",
        {"dsn": "postgresql://app@db.invalid/app", "sql": "DELETE FROM t", "rows": 0},
    )
    result = readycheck_process("validate", path)
    assert result.exit_code == 2
    assert "sql" in result.output
    assert "DELETE does not only read" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("params", "said"),
    [
        (
            {"sql": "SELECT 1", "rows": 0, "params": [1]},
            "params gives 1 value but the statement has no $1",
        ),
        ({"sql": "SELECT $1, $2", "rows": 1, "params": [1]}, "uses 2 parameters"),
        ({"sql": "SELECT 1"}, "give an expectation: rows, value or equals"),
        ({"sql": "SELECT 1", "rows": {"min": 5, "max": 2}}, "min (5) is more than max (2)"),
        ({"sql": "SELECT 1", "value": {"~": 1}}, "value"),
    ],
    ids=[
        "params-without-placeholder",
        "too-few-params",
        "no-expectation",
        "min-over-max",
        "bad-operator",
    ],
)
def test_parameters_that_cannot_work_are_refused_at_load(
    tmp_path: Path, params: dict[str, Any], said: str
) -> None:
    assert said in _load_error(tmp_path, **params)


def test_without_pglast_validate_says_which_extra_to_install(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    path = write_check_profile(
        tmp_path,
        "postgres.query",
        {"dsn": "postgresql://app@db.invalid/app", "sql": "SELECT 1", "rows": 1},
    )
    # pglast made unimportable, as in an environment installed without the extra.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "pglast.py").write_text("raise ImportError('No module named pglast')\n")
    env = {**subprocess_env, "PYTHONPATH": f"{blocker}:{subprocess_env['PYTHONPATH']}"}
    completed = subprocess.run(
        [sys.executable, "-m", "readycheck", "validate", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 2
    assert "pglast" in output
    assert "pip install 'readycheck[sql]'" in output
    assert "Traceback" not in output


# -- expectations ------------------------------------------------------------------------


def test_an_empty_result_passes_rows_zero(webhooks: PgDatabase, tmp_path: Path) -> None:
    result = _query(tmp_path, webhooks, "SELECT id FROM v_degraded_webhooks WHERE id > 100", rows=0)
    assert result.status is Status.PASS, result.summary
    assert result.summary == "0 rows (expected 0)"
    assert "✓ 0 rows (expected 0)" in result.evidence
    assert result.metrics["rows"] == 0


def test_rows_where_none_are_expected_fail_showing_them(
    webhooks: PgDatabase, tmp_path: Path
) -> None:
    result = _query(
        tmp_path, webhooks, "SELECT id, url FROM v_degraded_webhooks ORDER BY id", rows=0
    )
    assert result.status is Status.FAIL
    assert result.summary == "2 rows (expected 0)"
    assert result.evidence == [
        "SQL: SELECT id, url FROM v_degraded_webhooks ORDER BY id",
        "2 rows returned (columns: id, url)",
        "row 1: id=2, url='https://b.example/hook'",
        "row 2: id=3, url='https://c.example/hook'",
        "✗ 2 rows (expected 0)",
    ]


def test_a_long_statement_is_shown_on_one_shortened_line(
    webhooks: PgDatabase, tmp_path: Path
) -> None:
    columns = ",\n       ".join(f"failures + {n} AS plus_{n}" for n in range(30))
    sql = f"SELECT id,\n       {columns}\nFROM webhooks\nWHERE failures > 5"
    result = _query(tmp_path, webhooks, sql, rows=0)
    shown = result.evidence[0]
    assert shown.startswith("SQL: SELECT id, failures + 0 AS plus_0, failures + 1 AS plus_1, ")
    assert shown.endswith("…")
    assert len(shown) == len("SQL: ") + 160
    assert "\n" not in shown


@pytest.mark.parametrize(
    ("rows", "status", "said"),
    [
        ({"min": 1, "max": 5}, Status.PASS, "3 rows (expected 1 to 5)"),
        ({"min": 4}, Status.FAIL, "3 rows (expected at least 4)"),
        ({"max": 2}, Status.FAIL, "3 rows (expected at most 2)"),
        (3, Status.PASS, "3 rows (expected 3)"),
    ],
)
def test_a_row_count_range(
    webhooks: PgDatabase, tmp_path: Path, rows: Any, status: Status, said: str
) -> None:
    result = _query(tmp_path, webhooks, "SELECT id FROM webhooks", rows=rows)
    assert result.status is status
    assert result.summary == said


@pytest.mark.parametrize(
    ("value", "status", "comparisons"),
    [
        ({"<": 100}, Status.PASS, ["✓ count: 19 < 100"]),
        ({">=": 1, "<=": 10}, Status.FAIL, ["✓ count: 19 ≥ 1", "✗ count: 19 ≤ 10"]),
        ({"==": 19}, Status.PASS, ["✓ count: 19 = 19"]),
        ({"!=": 19.0}, Status.FAIL, ["✗ count: 19 ≠ 19.0"]),
    ],
)
def test_a_value_is_compared_with_each_operator(
    webhooks: PgDatabase,
    tmp_path: Path,
    value: dict[str, Any],
    status: Status,
    comparisons: list[str],
) -> None:
    result = _query(tmp_path, webhooks, "SELECT sum(failures) AS count FROM webhooks", value=value)
    assert result.status is status, result.summary
    assert [line for line in result.evidence if line[0] in "✓✗"] == comparisons
    assert result.metrics["value"] == 19


def test_a_value_from_no_row_or_null_fails(webhooks: PgDatabase, tmp_path: Path) -> None:
    none = _query(tmp_path, webhooks, "SELECT failures FROM webhooks WHERE id = 99", value={"<": 5})
    assert none.status is Status.FAIL
    assert none.summary == "failures: the statement returned no row, so no value to compare"
    null = _query(
        tmp_path, webhooks, "SELECT api_token FROM webhooks WHERE id = 3", value={"=": "x"}
    )
    assert null.status is Status.FAIL
    assert null.summary == "api_token is NULL, expected = 'x'"


def test_text_compared_with_a_number_is_an_error_of_the_assertion(
    webhooks: PgDatabase, tmp_path: Path
) -> None:
    result = _query(tmp_path, webhooks, "SELECT url FROM webhooks WHERE id = 1", value={"<": 5})
    assert result.status is Status.ERROR
    assert result.summary == "url is 'https://a.example/hook', which cannot be compared (<) with 5"


def test_equals_compares_rows_in_any_order_by_default(webhooks: PgDatabase, tmp_path: Path) -> None:
    expected = [[3, "https://c.example/hook"], [2, "https://b.example/hook"]]
    result = _query(tmp_path, webhooks, "SELECT id, url FROM v_degraded_webhooks", equals=expected)
    assert result.status is Status.PASS, result.evidence
    assert result.summary == "the 2 expected rows returned, in any order"
    ordered = _query(
        tmp_path,
        webhooks,
        "SELECT id, url FROM v_degraded_webhooks ORDER BY id",
        equals=expected,
        ordered=True,
    )
    assert ordered.status is Status.FAIL
    assert (
        "✗ row 1: expected (3, 'https://c.example/hook'), got id=2, url='https://b.example/hook'"
        in ordered.evidence
    )


def test_equals_names_missing_and_unexpected_rows(webhooks: PgDatabase, tmp_path: Path) -> None:
    result = _query(tmp_path, webhooks, "SELECT id FROM webhooks", equals=[1, 2, 4])
    assert result.status is Status.FAIL
    assert result.summary.startswith("3 rows returned, not the 3 expected (in any order)")
    assert "✗ missing row (4)" in result.evidence
    assert "✗ unexpected row id=3" in result.evidence


def test_equals_compares_numbers_as_numbers_and_other_types_by_their_text(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = _query(
        tmp_path,
        pg_database,
        "SELECT 1.50::numeric, true, NULL::int, '2024-05-01'::date,"
        " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '{\"a\": 1}'::jsonb",
        equals=[
            [1.5, True, None, "2024-05-01", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", '{"a": 1}']
        ],
    )
    assert result.status is Status.PASS, result.evidence


def test_params_are_bound_never_formatted_into_the_sql(
    webhooks: PgDatabase, tmp_path: Path
) -> None:
    hostile = "x' OR '1'='1"
    result = _query(
        tmp_path,
        webhooks,
        "SELECT id FROM webhooks WHERE url = $1 OR url LIKE '%' || $2",
        params=[hostile, "c.example/hook"],
        equals=[3],
    )
    assert result.status is Status.PASS, result.evidence


def test_show_and_explain_run(pg_database: PgDatabase, tmp_path: Path) -> None:
    show = _query(tmp_path, pg_database, "SHOW default_transaction_read_only", value={"=": "on"})
    assert show.status is Status.PASS, show.evidence
    explain = _query(tmp_path, pg_database, "EXPLAIN SELECT 1", rows={"min": 1})
    assert explain.status is Status.PASS, explain.evidence


def test_values_in_columns_named_like_secrets_are_masked(
    webhooks: PgDatabase, tmp_path: Path
) -> None:
    result = _query(tmp_path, webhooks, "SELECT id, api_token FROM webhooks ORDER BY id", rows=0)
    assert "row 1: id=1, api_token=***" in result.evidence
    assert "row 3: id=3, api_token=NULL" in result.evidence
    assert not any("tok-" in line for line in result.evidence)


def test_a_secret_value_read_from_the_database_is_redacted_everywhere(
    webhooks: PgDatabase, tmp_path: Path
) -> None:
    # The DSN's password, selected back, is masked like every other appearance of it.
    password = webhooks.server.app_password
    run = run_everywhere(
        tmp_path,
        "postgres.query",
        {
            "dsn": "${env:DATABASE_URL}",
            "sql": "SELECT $1::text AS note",
            "params": [password],
            "rows": 0,
        },
        environ={"DATABASE_URL": webhooks.dsn},
    )
    assert run.result["status"] == "FAIL"
    assert password not in run.text


# -- faults ------------------------------------------------------------------------------


def test_a_select_calling_a_function_that_writes_is_refused_by_the_session(
    webhooks: PgDatabase, tmp_path: Path
) -> None:
    webhooks.execute(
        "CREATE FUNCTION reset_failures() RETURNS int LANGUAGE sql VOLATILE AS"
        " 'UPDATE webhooks SET failures = 0 RETURNING 1'"
    )
    result = _query(tmp_path, webhooks, "SELECT reset_failures()", rows=1)
    assert result.status is Status.ERROR
    assert result.summary == (
        "the statement tried to write and the read-only session refused it "
        "(cannot execute UPDATE in a read-only transaction)"
    )
    assert "only reads" in (result.remediation or "")
    assert webhooks.execute("SELECT sum(failures) FROM webhooks") == [(19,)]


def test_a_statement_postgres_rejects_is_an_error_with_its_message(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = _query(tmp_path, pg_database, "SELECT * FROM no_such_table", rows=0)
    assert result.status is Status.ERROR
    assert 'relation "no_such_table" does not exist' in result.summary


def test_ten_thousand_rows_are_counted_with_capped_evidence(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = _query(
        tmp_path,
        pg_database,
        "SELECT n, repeat('x', 2000) AS padding FROM generate_series(1, 10000) AS n",
        rows=0,
        evidence_rows=3,
    )
    assert result.status is Status.FAIL
    assert result.summary == "at least 10,000 rows (expected 0)"
    rows_shown = [line for line in result.evidence if line.startswith("row ")]
    assert len(rows_shown) == 3
    assert all(len(line) < 200 for line in rows_shown)
    assert "… at least 9,997 more not shown" in result.evidence
    exact = _query(
        tmp_path, pg_database, "SELECT n FROM generate_series(1, 9999) AS n", rows={"max": 10}
    )
    assert exact.summary == "9,999 rows (expected at most 10)"


def test_ten_thousand_rows_are_not_held_in_memory(pg_database: PgDatabase, tmp_path: Path) -> None:
    # 10,000 rows of 2 kB: 20 MB if they were fetched; the check holds a handful.
    path = write_check_profile(
        tmp_path,
        "postgres.query",
        {
            "dsn": pg_database.dsn,
            "sql": "SELECT n, repeat('x', 2000) AS padding FROM generate_series(1, 10000) AS n",
            "equals": [[1, "x"]],
        },
    )
    profile = load_profile(path, environ={})
    asyncio.run(Engine(profile).run())  # warm: imports, first connection
    gc.collect()
    tracemalloc.start()
    try:
        result = asyncio.run(Engine(profile).run()).checks[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status is Status.FAIL
    assert result.evidence[1] == "at least 5 rows returned (columns: n, padding)"
    assert peak < 5_000_000, f"peak {peak:,} bytes"


def test_a_statement_over_its_time_is_an_error_naming_the_timeout(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    result = run_check(
        tmp_path,
        "postgres.query",
        {"dsn": pg_database.dsn, "sql": "SELECT pg_sleep(30)", "rows": 1},
        timeout="2s",
    )
    assert result.status is Status.ERROR
    assert "statement_timeout" in result.summary
