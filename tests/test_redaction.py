"""Secret values appear in no output: console, JSON, JUnit, Markdown, log, errors."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from readycheck.params import SecretDsn
from readycheck.redact import Redactor, looks_secret
from tests.conftest import CliResult

CANARY = "c4n4ry-S3cr3t/with+chars&more"
ENV_CANARY = "envCanary-0a1b2c3d"
DSN_PASSWORD = "p@ss:w0rd/canary"


def leaked_forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


def assert_no_leak(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in leaked_forms(secret):
            assert form not in text, f"{form!r} leaked"


@pytest.mark.parametrize("outcome", ["PASS", "FAIL", "ERROR", "RAISE"])
def test_secrets_appear_in_no_output_on_any_path(
    outcome: str,
    write_profile: Callable[..., Path],
    tmp_path: Path,
    readycheck_process: Callable[..., CliResult],
) -> None:
    path = write_profile(
        f"""
        name: leak-test
        signoff: {{service: svc, release: "${{env:API_TOKEN}}"}}
        checks:
          - id: secret
            type: test.secret
            retries: 1
            retry_interval: 10ms
            with: {{token: "{CANARY}", outcome: {outcome}}}
          - id: env
            type: command
            with:
              argv: [sh, -c, 'echo "token=$API_TOKEN"; echo "{CANARY}"; exit 1']
              env: {{API_TOKEN: "${{env:API_TOKEN}}"}}
          - id: dsn-in-output
            type: command
            with:
              argv: [sh, -c, 'echo "connecting to postgresql://app:{quote(DSN_PASSWORD, safe="")}@db:5432/app"; exit 2']
        """
    )
    outputs = {name: tmp_path / name for name in ("r.json", "r.md", "j.xml", "debug.log")}
    result = readycheck_process(
        "run",
        path,
        "--json",
        outputs["r.json"],
        "--report",
        outputs["r.md"],
        "--junit",
        outputs["j.xml"],
        "--log",
        outputs["debug.log"],
        "--debug",
        env={"API_TOKEN": ENV_CANARY},
    )
    assert result.exit_code == 1, result.output
    everything = result.output + "".join(p.read_text() for p in outputs.values())
    assert "***" in everything
    assert_no_leak(everything, CANARY, ENV_CANARY, DSN_PASSWORD)
    if outcome == "RAISE":
        assert "RuntimeError" in everything and "Traceback" in everything


def test_a_secret_in_a_profile_error_is_not_shown(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    path = write_profile(
        "checks: [{id: a, type: test.secret, with: {token: [1, 2], outcome: FAIL}}, "
        "{id: b, type: test.sleep, with: {seconds: '${env:SECRET_KEY}'}}]\n"
    )
    result = cli("validate", path, env={"SECRET_KEY": "sk-canary-value"})
    assert result.exit_code == 2
    assert "expected a string, got a list" in result.stderr
    assert "sk-canary-value" not in result.output


def test_dsn_passwords_are_known_to_the_redactor_in_every_spelling() -> None:
    dsn = SecretDsn(f"postgresql://app:{quote(DSN_PASSWORD, safe='')}@db/app?sslmode=require")
    redactor = Redactor(dsn.redaction_values())
    for text in [DSN_PASSWORD, quote(DSN_PASSWORD, safe=""), f"password={DSN_PASSWORD}"]:
        assert DSN_PASSWORD not in redactor.redact(f"error near {text}")
    keyword = SecretDsn("host=db user=app password='it''s secret' dbname=app")
    assert "it''s secret" in keyword.redaction_values()[1] or any(
        "secret" in value for value in keyword.redaction_values()
    )


def test_url_credentials_are_masked_even_when_not_registered() -> None:
    redactor = Redactor()
    assert (
        redactor.redact("redis://:hunter2@cache:6379/0 failed")
        == "redis://:***@cache:6379/0 failed"
    )
    assert redactor.redact("dbname=app password=hunter2 host=x") == "dbname=app password=*** host=x"


def test_longest_secret_wins_so_nothing_is_half_masked() -> None:
    redactor = Redactor(["abc", "abcdef"])
    assert redactor.redact("xx abcdef yy") == "xx *** yy"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("DATABASE_PASSWORD", True),
        ("API_TOKEN", True),
        ("SECRET_KEY", True),
        ("stripeApiKey", True),
        ("Authorization", True),
        ("DEBUG", False),
        ("ENVIRONMENT", False),
        ("KEYBOARD_LAYOUT", False),
    ],
)
def test_names_that_look_secret(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret
