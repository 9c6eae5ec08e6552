"""config.env: rules on environment variables (or a .env file), the production preset,
secret values kept out of evidence, and .env files parsed as python-dotenv parses them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from readycheck.checks.sources import parse_dotenv
from readycheck.profile import load_profile
from readycheck.results import Status
from tests.conftest import CheckRun, CliResult, RunCheck

PRODUCTION_READY = {
    "DEBUG": "False",
    "ENVIRONMENT": "production",
    "CORS_ORIGINS": "https://app.example.com,https://admin.example.com",
    "DATABASE_URL": "postgresql://app:Pg-pass-4f9a2c@db.internal:5432/app",
}
PRESET_NAMES = [
    "DEBUG",
    "DJANGO_DEBUG",
    "FLASK_DEBUG",
    "ENVIRONMENT",
    "CORS_ALLOWED_ORIGINS",
    "CORS_ORIGINS",
    "ALLOWED_ORIGINS",
    "BACKEND_CORS_ORIGINS",
    "DATABASE_URL",
]


class Run(CheckRun):
    def line(self, name: str) -> str:
        """The evidence line of the rule about ``name``."""
        found = [e for e in self.result.evidence if e.startswith((f"{name}=", f"{name}:"))]
        assert len(found) == 1, self.result.evidence
        return found[0]


RunConfig = Callable[..., Run]


@pytest.fixture
def run_config(run_check: RunCheck, monkeypatch: pytest.MonkeyPatch) -> RunConfig:
    """Run one config.env check (its `with:` block as YAML) with exactly these of the
    preset's variables set in the process environment, plus ``env``."""

    def run(params: str, *, env: dict[str, str] | None = None) -> Run:
        for name in PRESET_NAMES:
            monkeypatch.delenv(name, raising=False)
        done = run_check("config.env", params, env=env)
        return Run(done.result, done.engine)

    return run


# -- rules -------------------------------------------------------------------------------------


def test_a_required_variable_that_is_unset_fails_naming_it(run_config: RunConfig) -> None:
    run = run_config("{rules: [{name: SENTRY_ENVIRONMENT}]}")
    assert run.result.status is Status.FAIL
    assert run.line("SENTRY_ENVIRONMENT") == "SENTRY_ENVIRONMENT: not set (required)"
    assert "SENTRY_ENVIRONMENT: not set (required)" in run.result.summary


def test_an_empty_value_is_not_set(run_config: RunConfig) -> None:
    run = run_config("{rules: [{name: SENTRY_ENVIRONMENT}]}", env={"SENTRY_ENVIRONMENT": ""})
    assert run.result.status is Status.FAIL
    assert run.line("SENTRY_ENVIRONMENT") == "SENTRY_ENVIRONMENT: set but empty (required)"


def test_an_optional_variable_may_be_unset(run_config: RunConfig) -> None:
    run = run_config("{rules: [{name: LOG_LEVEL, required: false, in: [INFO, WARNING]}]}")
    assert run.result.status is Status.PASS
    assert run.line("LOG_LEVEL") == "LOG_LEVEL: not set (optional)"


def test_equals_compares_strings(run_config: RunConfig) -> None:
    ok = run_config(
        "{rules: [{name: ENVIRONMENT, equals: production}]}", env={"ENVIRONMENT": "production"}
    )
    assert ok.result.status is Status.PASS
    assert ok.line("ENVIRONMENT") == "ENVIRONMENT='production': equals 'production'"
    wrong = run_config(
        "{rules: [{name: ENVIRONMENT, equals: production}]}", env={"ENVIRONMENT": "Production"}
    )
    assert wrong.result.status is Status.FAIL
    assert wrong.line("ENVIRONMENT") == "ENVIRONMENT='Production': expected 'production'"


def test_numbers_are_compared_as_written(run_config: RunConfig) -> None:
    run = run_config("{rules: [{name: WEB_CONCURRENCY, equals: 4}]}", env={"WEB_CONCURRENCY": "4"})
    assert run.result.status is Status.PASS


@pytest.mark.parametrize(
    ("value", "holds"),
    [
        ("false", True),
        ("0", True),
        ("No", True),
        ("OFF", True),
        ("true", False),
        ("1", False),
        ("maybe", False),
    ],
)
def test_booleans_are_recognised_in_any_spelling(
    run_config: RunConfig, value: str, holds: bool
) -> None:
    run = run_config("{rules: [{name: DEBUG, equals: false}]}", env={"DEBUG": value})
    assert (run.result.status is Status.PASS) is holds
    assert run.line("DEBUG") == f"DEBUG='{value}': " + (
        "equals false" if holds else "expected false"
    )


def test_a_boolean_word_as_expected_value_is_a_boolean(run_config: RunConfig) -> None:
    run = run_config(
        "{rules: [{name: DEBUG, equals: 'off'}, {name: USE_TLS, in: ['yes']}]}",
        env={"DEBUG": "0", "USE_TLS": "TRUE"},
    )
    assert run.result.status is Status.PASS, run.shown


def test_in_and_not_in(run_config: RunConfig) -> None:
    run = run_config(
        "{rules: [{name: LOG_LEVEL, in: [INFO, WARNING]}, {name: REGION, not_in: [us-east-1, local]}]}",
        env={"LOG_LEVEL": "DEBUG", "REGION": "local"},
    )
    assert run.result.status is Status.FAIL
    assert run.line("LOG_LEVEL") == "LOG_LEVEL='DEBUG': is not one of ['INFO', 'WARNING']"
    assert (
        run.line("REGION")
        == "REGION='local': is one of ['us-east-1', 'local'], which are forbidden"
    )
    assert run.result.summary.startswith("2 of 2 rules broken in the environment: ")


def test_matches_and_not_matches(run_config: RunConfig) -> None:
    run = run_config(
        r"{rules: [{name: PUBLIC_URL, matches: '^https://', not_matches: 'localhost'}]}",
        env={"PUBLIC_URL": "https://api.example.com"},
    )
    assert run.result.status is Status.PASS
    assert (
        run.line("PUBLIC_URL")
        == "PUBLIC_URL='https://api.example.com': matches '^https://', does not match 'localhost'"
    )
    bad = run_config(
        r"{rules: [{name: PUBLIC_URL, matches: '^https://', not_matches: 'localhost'}]}",
        env={"PUBLIC_URL": "http://localhost:8000"},
    )
    assert (
        bad.line("PUBLIC_URL")
        == "PUBLIC_URL='http://localhost:8000': does not match '^https://'; matches the forbidden 'localhost'"
    )


def test_absent(run_config: RunConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONBREAKPOINT_DEBUG", raising=False)
    ok = run_config("{rules: [{name: PYTHONBREAKPOINT_DEBUG, absent: true}]}")
    assert ok.line("PYTHONBREAKPOINT_DEBUG") == "PYTHONBREAKPOINT_DEBUG: not set, as required"
    present = run_config(
        "{rules: [{name: PYTHONBREAKPOINT_DEBUG, absent: true}]}",
        env={"PYTHONBREAKPOINT_DEBUG": ""},
    )
    assert present.result.status is Status.FAIL
    assert present.line("PYTHONBREAKPOINT_DEBUG") == "PYTHONBREAKPOINT_DEBUG: set, but must not be"


def test_a_value_with_a_line_break_stays_on_one_evidence_line(run_config: RunConfig) -> None:
    run = run_config("{rules: [{name: GREETING, equals: hello}]}", env={"GREETING": "hello\nworld"})
    assert run.result.status is Status.FAIL
    assert run.line("GREETING") == "GREETING='hello\\nworld': expected 'hello'"


def test_a_value_that_is_not_utf8_fails_without_being_shown(
    write_profile: Callable[..., Path], readycheck_process: Callable[..., CliResult], tmp_path: Path
) -> None:
    path = write_profile("checks: [{id: c, type: config.env, with: {rules: [{name: REGION}]}}]\n")
    # os.environ holds bytes that are not UTF-8 as surrogate escapes; the child gets bytes.
    result = readycheck_process(
        "run", path, "--json", tmp_path / "r.json", env={"REGION": "eu\udcff"}
    )
    assert result.exit_code == 1, result.output
    assert "REGION: not UTF-8 text" in (tmp_path / "r.json").read_text()


def test_long_values_are_cut(run_config: RunConfig) -> None:
    run = run_config("{rules: [{name: ALLOWED_HOSTS}]}", env={"ALLOWED_HOSTS": "h" * 200})
    assert run.line("ALLOWED_HOSTS") == f"ALLOWED_HOSTS='{'h' * 57}...': set"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("[{name: A, absent: true, equals: x}]", "absent: true cannot be combined"),
        ("[{name: A, absent: true, required: true}]", "contradict each other"),
        ("[{name: A}, {name: A, equals: x}]", "more than one rule for A"),
        ("[{name: 'A=1'}]", "contains '='"),
        ("[{name: A, matches: '('}]", "invalid regular expression"),
        ("[]", "give rules, a preset, or both"),
    ],
)
def test_contradictory_rules_are_profile_errors(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult], rules: str, message: str
) -> None:
    path = write_profile(f"checks: [{{id: c, type: config.env, with: {{rules: {rules}}}}}]\n")
    result = cli("validate", path)
    assert result.exit_code == 2
    assert message in result.stderr


# -- the production preset ---------------------------------------------------------------------


def test_the_production_preset_passes_a_production_environment(run_config: RunConfig) -> None:
    run = run_config("{preset: production}", env=PRODUCTION_READY)
    assert run.result.status is Status.PASS, run.shown
    assert run.result.summary == "all 9 rules hold in the environment"
    assert len(run.result.evidence) == 9  # one line per rule
    assert run.line("DEBUG") == "DEBUG='False': equals false"
    assert run.line("FLASK_DEBUG") == "FLASK_DEBUG: not set (optional)"


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("DEBUG", "True", "DEBUG='True': expected false"),
        ("DJANGO_DEBUG", "on", "DJANGO_DEBUG='on': expected false"),
        ("ENVIRONMENT", "staging", "ENVIRONMENT='staging': expected 'production'"),
        ("CORS_ORIGINS", "*", "CORS_ORIGINS='*': matches the forbidden"),
        (
            "BACKEND_CORS_ORIGINS",
            '["https://a.example", "*"]',
            'BACKEND_CORS_ORIGINS=\'["https://a.example", "*"]\': matches the forbidden',
        ),
        (
            "DATABASE_URL",
            "sqlite:///./app.db",
            "DATABASE_URL='sqlite:///./app.db': matches the forbidden",
        ),
    ],
)
def test_the_production_preset_fails_what_production_must_not_have(
    run_config: RunConfig, name: str, value: str, line: str
) -> None:
    run = run_config("{preset: production}", env={**PRODUCTION_READY, name: value})
    assert run.result.status is Status.FAIL
    assert run.line(name).startswith(line)
    assert run.result.summary.startswith("1 of 9 rules broken in the environment: ")


def test_a_wildcard_subdomain_is_not_any_origin(run_config: RunConfig) -> None:
    run = run_config(
        "{preset: production}", env={**PRODUCTION_READY, "CORS_ORIGINS": "https://*.example.com"}
    )
    assert run.result.status is Status.PASS


def test_the_production_preset_requires_environment(run_config: RunConfig) -> None:
    env = {k: v for k, v in PRODUCTION_READY.items() if k != "ENVIRONMENT"}
    run = run_config("{preset: production}", env=env)
    assert run.line("ENVIRONMENT") == "ENVIRONMENT: not set (required)"


def test_explicit_rules_join_the_preset_and_replace_its_rule_for_the_same_name(
    run_config: RunConfig,
) -> None:
    run = run_config(
        "{preset: production, rules: [{name: ENVIRONMENT, in: [production, prod]}, {name: SENTRY_DSN}]}",
        env={
            **PRODUCTION_READY,
            "ENVIRONMENT": "prod",
            "SENTRY_DSN": "https://abc123def456@o1.ingest.sentry.io/42",
        },
    )
    assert run.result.status is Status.PASS, run.shown
    assert run.result.summary == "all 10 rules hold in the environment"
    assert run.line("ENVIRONMENT") == "ENVIRONMENT='prod': is one of ['production', 'prod']"


def test_an_unknown_preset_is_a_profile_error_with_its_line(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    path = write_profile(
        """
        checks:
          - id: config
            type: config.env
            with: {preset: prodution}
        """
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert "profile.yaml:4:" in result.stderr
    assert "'prodution'" in result.stderr and "production" in result.stderr


# -- secrets stay out of the evidence ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRIPE_API_KEY", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("SESSION_SECRET", "Vq2-secret-value-91ad"),
        ("AUTH_TOKEN", "tok-77f0e1c2b9a8"),
        ("DB_PASSWORD", "correct-horse-battery"),
        ("SENTRY_DSN", "https://abc123def456@o1.ingest.sentry.io/42"),
        ("CACHE_URL", "redis://:r3dis-pass-99@cache:6379/0"),
        ("BROKER", "amqp://user:p@ss#w0rd?x@mq:5672/"),  # malformed: unencoded @ # ?
        ("PG", "host=db user=app password=kw-pass-123"),
    ],
)
def test_secret_values_are_never_shown(run_config: RunConfig, name: str, value: str) -> None:
    run = run_config(
        f"{{rules: [{{name: {name}, matches: '^nomatch', not_in: ['{value}']}}]}}",
        env={name: value},
    )
    assert run.result.status is Status.FAIL
    line = run.line(name)
    assert line == (
        f"{name}=<secret, {len(value)} characters>: "
        "is one of the 1 listed values, which are forbidden; does not match '^nomatch'"
    )
    assert value not in run.shown
    assert value in run.engine.redactor


def test_the_password_inside_a_malformed_url_is_registered(run_config: RunConfig) -> None:
    run = run_config(
        "{rules: [{name: BROKER}]}", env={"BROKER": "amqp://user:p@ss#w0rd?x@mq:5672/"}
    )
    assert "p@ss#w0rd?x" in run.engine.redactor


def test_a_rule_can_mark_a_value_secret(run_config: RunConfig) -> None:
    run = run_config("{rules: [{name: LICENSE, secret: true}]}", env={"LICENSE": "lic-0a9b8c7d"})
    assert run.line("LICENSE") == "LICENSE=<secret, 12 characters>: set"


def test_short_values_of_secret_looking_names_are_hidden_but_not_masked_everywhere(
    run_config: RunConfig,
) -> None:
    run = run_config(
        "{rules: [{name: PASSWORD_MIN_LENGTH, equals: 8}]}", env={"PASSWORD_MIN_LENGTH": "8"}
    )
    assert (
        run.line("PASSWORD_MIN_LENGTH")
        == "PASSWORD_MIN_LENGTH=<secret, 1 characters>: equals the expected value"
    )
    assert "8" not in run.engine.redactor


def test_secret_environment_values_are_masked_from_the_moment_the_profile_loads(
    write_profile: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_4eC39HqLyjWDarjtT1zdp7dc")
    path = write_profile(
        "checks: [{id: c, type: config.env, with: {rules: [{name: STRIPE_API_KEY}]}}]\n"
    )
    assert "sk_live_4eC39HqLyjWDarjtT1zdp7dc" in load_profile(path).secrets


# -- .env files --------------------------------------------------------------------------------


def test_rules_read_a_dotenv_file_without_exporting_it(
    run_config: RunConfig, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "# production settings\nexport DEBUG=off\nENVIRONMENT='production'\n"
        'DATABASE_URL="postgresql://app:${DB_PASSWORD}@db/app"\nDB_PASSWORD=dotenv-pass-123\n'
    )
    run = run_config("{source: {dotenv: .env}, preset: production}")
    assert run.result.status is Status.PASS, run.shown
    assert run.result.summary == "all 9 rules hold in .env"
    assert "ENVIRONMENT" not in os.environ


def test_a_missing_dotenv_file_fails(run_config: RunConfig) -> None:
    run = run_config("{source: {dotenv: deploy/.env}, preset: production}")
    assert run.result.status is Status.FAIL
    assert run.result.summary == "deploy/.env does not exist"


def test_a_dotenv_directory_or_non_utf8_file_fails(run_config: RunConfig, tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    assert (
        run_config("{source: {dotenv: .env}, preset: production}").result.summary
        == ".env is a directory, not a file"
    )
    (tmp_path / ".env").rmdir()
    (tmp_path / ".env").write_bytes(b"ENVIRONMENT=produ\xe7tion\n")
    run = run_config("{source: {dotenv: .env}, preset: production}")
    assert run.result.summary == ".env is not UTF-8 text (undecodable byte at offset 17)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_dotenv_file_is_an_error(run_config: RunConfig, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ENVIRONMENT=production\n")
    (tmp_path / ".env").chmod(0)
    run = run_config("{source: {dotenv: .env}, preset: production}")
    assert run.result.status is Status.ERROR


def test_a_nul_in_a_dotenv_value_fails(run_config: RunConfig, tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"ENVIRONMENT=production\x00\n")
    run = run_config("{source: {dotenv: .env}, rules: [{name: ENVIRONMENT}]}")
    assert run.result.status is Status.FAIL
    assert run.line("ENVIRONMENT") == "ENVIRONMENT='production\\x00': contains a NUL character"


def test_lines_that_do_not_parse_are_named_and_warned_about(
    run_config: RunConfig, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("ENVIRONMENT=production\nthis is not a setting\n")
    run = run_config("{source: {dotenv: .env}, rules: [{name: ENVIRONMENT}]}")
    assert run.result.status is Status.WARN
    assert ".env: lines 2 could not be parsed (skipped)" in run.result.evidence


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\nB=2", {"A": "1", "B": "2"}),
        ("export A=1", {"A": "1"}),
        ("A = 1 # comment", {"A": "1"}),
        ("A=#not-a-comment", {"A": "#not-a-comment"}),
        ("A= # a comment", {"A": ""}),
        ("A=x#y", {"A": "x#y"}),
        ("A='single ${HOME_DIR} \\' quote'", {"A": "single /home/app ' quote"}),
        ('A="tab\\there \\"quoted\\""', {"A": 'tab\there "quoted"'}),
        ('A="two\nlines"', {"A": "two\nlines"}),
        ("A", {"A": None}),
        ("A=", {"A": ""}),
        ("A=1\nA=2", {"A": "2"}),
        ("A=${HOME_DIR}/app", {"A": "/home/app/app"}),
        ("B=b\nA=${B}-${MISSING:-fallback}-${MISSING}", {"B": "b", "A": "b-fallback-"}),
        ("\ufeffA=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
        ("'quoted key'=3", {"quoted key": "3"}),
        ("A=1\nnot valid here\nB=2", {"A": "1", "B": "2"}),
    ],
)
def test_dotenv_parsing_follows_python_dotenv(text: str, expected: dict[str, str | None]) -> None:
    assert parse_dotenv(text, {"HOME_DIR": "/home/app"}).values == expected


def test_dotenv_parse_errors_are_reported_by_line() -> None:
    parsed = parse_dotenv("A=1\n\nnot valid\nB='unterminated\nC=3\n", {})
    assert parsed.values == {"A": "1", "C": "3"}
    assert parsed.unparsed_lines == [3, 4]


def test_explain_lists_every_rule_field(cli: Callable[..., CliResult]) -> None:
    result = cli("explain", "config.env")
    assert result.exit_code == 0
    for field in [
        "source",
        "rules",
        "preset",
        "EnvRule",
        "required",
        "equals",
        "in ",
        "not_in",
        "matches",
        "not_matches",
        "absent",
        "VariablesSource",
        "dotenv",
    ]:
        assert field in result.stdout, field
