"""Secret values appear in no output: console, JSON, JUnit, Markdown, log, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from readycheck.params import SecretDsn
from readycheck.redact import Redactor, looks_secret, url_has_credentials
from tests.conftest import CliResult

# The end-to-end test (every output, every path) is tests/test_no_leak.py.
DSN_PASSWORD = "p@ss:w0rd/canary"


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


def test_a_malformed_url_still_has_credentials() -> None:
    # A password with an unencoded / breaks the URL; it is still a password.
    assert url_has_credentials("postgresql://app:p4ss/word@db:5432/app")
    assert url_has_credentials("redis://:hunter2@cache:6379/0")
    assert not url_has_credentials("https://api.example.com:8443/health")
    assert not url_has_credentials("postgresql://db.internal/app")


def test_a_secret_that_is_not_utf8_is_masked_not_a_crash() -> None:
    # os.environ holds bytes that are not UTF-8 as surrogate escapes.
    value = b"tok\xff\xfe-secret".decode("utf-8", "surrogateescape")
    redactor = Redactor([value])
    assert redactor.redact(f"token {value} and %FF%FE") == "token *** and %FF%FE"
    assert redactor.redact("tok%FF%FE-secret") == "***"


def test_longest_secret_wins_so_nothing_is_half_masked() -> None:
    redactor = Redactor(["abcd", "abcdefgh"])
    assert redactor.redact("xx abcdefgh yy abcd") == "xx *** yy ***"


def test_very_short_values_are_not_masked_in_free_text_but_still_in_urls() -> None:
    redactor = Redactor(["app"])
    assert redactor.redact("the app user") == "the app user"
    assert redactor.redact("postgresql://u:app@db/x") == "postgresql://u:***@db/x"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("DATABASE_PASSWORD", True),
        ("API_TOKEN", True),
        ("SECRET_KEY", True),
        ("stripeApiKey", True),
        ("Authorization", True),
        ("GPG_PASSPHRASE", True),
        ("--passphrase", True),
        ("DEBUG", False),
        ("ENVIRONMENT", False),
        ("KEYBOARD_LAYOUT", False),
    ],
)
def test_names_that_look_secret(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret
