"""secret.strength and secret.distinct: strength estimates, placeholders, encodings,
presets, and every way of not getting a value (unset, empty, missing or odd files)."""

from __future__ import annotations

import base64
import math
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from readycheck.checks.entropy import (
    alphabet_size,
    ceiling_bits,
    estimate_bytes_bits,
    estimate_text_bits,
)
from readycheck.checks.sources import SourceProblem, read_file_bytes
from readycheck.profile import load_profile
from readycheck.results import Status
from tests.conftest import CheckRun, CliResult, RunCheck

STRONG = "Zq8-" + secrets.token_urlsafe(40)


Run = CheckRun
RunOne = RunCheck


@pytest.fixture
def run_one(run_check: RunCheck) -> RunOne:
    """Run one check (type and `with:` block as YAML flow text) with these environment
    variables set in the process, and keep the engine to look at its redactor."""
    return run_check


def assert_value_not_shown(run: Run, value: str) -> None:
    """Not the value, nor any 6-character piece of it."""
    shown = run.shown
    for start in range(max(1, len(value) - 5)):
        assert value[start : start + 6] not in shown, f"a piece of the value shows: {shown}"


# -- the estimator ------------------------------------------------------------------------------


def test_random_keys_score_what_their_length_and_alphabet_allow() -> None:
    assert estimate_text_bits(secrets.token_hex(32)) == 256.0  # 64 hex digits
    assert estimate_bytes_bits(os.urandom(32)) == 256.0
    django_like = "".join(
        secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*(-_=+)") for _ in range(50)
    )
    assert estimate_text_bits(django_like) > 256


@pytest.mark.parametrize(
    "value",
    ["a1B2c3D4e5", "ÄÖÜäöüß-long-unicode-value", "0123456789" * 3, secrets.token_hex(8), "!!!!"],
)
def test_the_estimate_never_exceeds_length_times_log2_of_the_alphabet(value: str) -> None:
    assert estimate_text_bits(value) <= ceiling_bits(len(value), alphabet_size(value)) + 1e-9


def test_the_alphabet_comes_from_the_character_classes_used() -> None:
    assert alphabet_size("0123456789") == 10
    assert alphabet_size("deadbeef00") == 16
    assert alphabet_size("abcxyz") == 26
    assert alphabet_size("abcXYZ") == 52
    assert alphabet_size("abcXYZ09") == 62
    assert alphabet_size("abc-XYZ_09") == 95
    assert math.isclose(ceiling_bits(43, 62), 43 * math.log2(62))


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("a run of one character", "a" * 64),
        ("a run inside", "Kx9" + "z" * 40 + "Qw7"),
        ("a keyboard walk", "qwertyuiopasdfghjklzxcvbnm1234567890"),
        ("keyboard columns", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,"),
        ("a dictionary word repeated", "password" * 6),
        ("a capitalised word repeated", "Secret" * 8),
        ("a short pattern repeated", "ab12" * 16),
        ("a symbol pattern repeated", "x!Y?" * 12),
        ("a sequence", "abcdefghijklmnopqrstuvwxyz0123456789"),
    ],
)
def test_structure_scores_low(kind: str, value: str) -> None:
    assert len(value) >= 32
    assert estimate_text_bits(value) < 80, kind


def test_decoded_bytes_that_are_text_are_judged_as_text() -> None:
    assert estimate_bytes_bits(b"passwordpasswordpasswordpassword") < 40
    assert estimate_bytes_bits(bytes(32)) < 20  # 32 zero bytes


# -- secret.strength: PASS and what it shows ----------------------------------------------------


def test_a_strong_secret_passes_showing_only_name_length_bits_and_fingerprint(
    run_one: RunOne,
) -> None:
    run = run_one(
        "secret.strength", "{source: {env: APP_SECRET_KEY}}", env={"APP_SECRET_KEY": STRONG}
    )
    assert run.result.status is Status.PASS, run.shown
    facts = run.result.evidence[0]
    assert re.fullmatch(
        rf"env APP_SECRET_KEY: {len(STRONG)} characters, ~\d+ bits estimated, fingerprint [0-9a-f]{{8}}",
        facts,
    ), facts
    assert run.result.evidence[1] == "required: at least 32 characters and 128 bits"
    assert run.result.metrics["length"] == len(STRONG)
    assert run.result.metrics["entropy_bits"] > 200
    assert_value_not_shown(run, STRONG)
    assert STRONG in run.engine.redactor


def test_the_same_value_has_the_same_fingerprint_within_a_run(run_one: RunOne) -> None:
    run = run_one(
        "secret.distinct",
        "{sources: [{env: KEY_A}, {env: KEY_B}]}",
        env={"KEY_A": STRONG, "KEY_B": STRONG},
    )
    fingerprints = [line.rsplit(" ", 1)[1] for line in run.result.evidence]
    assert fingerprints[0] == fingerprints[1]
    assert re.fullmatch("[0-9a-f]{8}", fingerprints[0])


# -- secret.strength: FAIL -----------------------------------------------------------------------


def test_a_short_secret_fails_with_its_length_and_the_minimum(run_one: RunOne) -> None:
    value = "Zq8-" + secrets.token_urlsafe(12)
    run = run_one("secret.strength", "{source: {env: SHORT_KEY}}", env={"SHORT_KEY": value})
    assert run.result.status is Status.FAIL
    assert f"too short: {len(value)} characters, at least 32 required" in run.result.summary
    assert "token_urlsafe" in (run.result.remediation or "")
    assert_value_not_shown(run, value)


def test_a_long_but_structured_secret_fails_on_estimated_bits(run_one: RunOne) -> None:
    run = run_one("secret.strength", "{source: {env: WALK_KEY}}", env={"WALK_KEY": "ab12" * 16})
    assert run.result.status is Status.FAIL
    assert re.search(r"estimated \d+ bits, at least 128 required", run.result.summary)
    assert "too short" not in run.result.summary


def test_minimums_are_parameters(run_one: RunOne) -> None:
    value = "Zq8-" + secrets.token_urlsafe(12)
    run = run_one(
        "secret.strength",
        "{source: {env: SMALL_KEY}, min_length: 16, min_entropy_bits: 64}",
        env={"SMALL_KEY": value},
    )
    assert run.result.status is Status.PASS, run.shown


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("changeme", "well-known placeholder"),
        ("Your-Secret-Key-Here", "well-known placeholder"),
        ("secret", "well-known placeholder"),
        ("password", "well-known placeholder"),
        ("your-256-bit-secret", "well-known placeholder"),
        ("x" * 40, "one character repeated"),
        ("XXXX-XXXX-XXXX-XXXX", "one character repeated"),
        ("THE_KEY", "its own name"),
        ("django-insecure-" + secrets.token_urlsafe(40), "Django's insecure development key"),
        ("changeme-" + secrets.token_urlsafe(30), "contains a placeholder word"),
        ("${THE_KEY}", "template marker"),
        ("<your key>", "template marker"),
        ('_5#y2L"F4Q8z\\n\\xec]/', "Flask's documentation example"),
    ],
)
def test_placeholders_fail_without_being_quoted(run_one: RunOne, value: str, why: str) -> None:
    run = run_one(
        "secret.strength",
        "{source: {env: THE_KEY}, min_length: 1, min_entropy_bits: 0}",
        env={"THE_KEY": value},
    )
    assert run.result.status is Status.FAIL
    # The value is masked wherever it appears, so with "secret" the message reads "not a ***".
    masked = run.engine.redactor.redact
    assert masked("a placeholder, not a secret: ") in run.result.summary
    assert masked(why) in run.result.summary
    # A well-known placeholder is no secret, but the random part after one is.
    random_part = value.removeprefix("django-insecure-").removeprefix("changeme-")
    if random_part != value:
        assert_value_not_shown(run, random_part)


def test_placeholders_can_be_allowed(run_one: RunOne) -> None:
    run = run_one(
        "secret.strength",
        "{source: {env: THE_KEY}, min_length: 1, min_entropy_bits: 0, forbid_placeholders: false}",
        env={"THE_KEY": "changeme"},
    )
    assert run.result.status is Status.PASS


def test_forbidden_and_required_patterns(run_one: RunOne) -> None:
    test_key = "sk_test_" + secrets.token_urlsafe(32)
    forbidden = run_one(
        "secret.strength",
        "{source: {env: STRIPE_KEY}, forbid_patterns: '^sk_test_', require_patterns: ['^sk_live_']}",
        env={"STRIPE_KEY": test_key},
    )
    assert forbidden.result.status is Status.FAIL
    assert "matches the forbidden pattern '^sk_test_'" in forbidden.result.summary
    assert "does not match the required pattern '^sk_live_'" in forbidden.result.summary
    live = run_one(
        "secret.strength",
        "{source: {env: STRIPE_KEY}, require_patterns: '^sk_live_'}",
        env={"STRIPE_KEY": "sk_live_" + secrets.token_urlsafe(32)},
    )
    assert live.result.status is Status.PASS, live.shown


# -- encodings ----------------------------------------------------------------------------------


def test_hex_is_judged_on_the_decoded_bytes(run_one: RunOne) -> None:
    run = run_one(
        "secret.strength",
        "{source: {env: HEX_KEY}, encoding: hex}",
        env={"HEX_KEY": secrets.token_hex(32)},
    )
    assert run.result.status is Status.PASS, run.shown
    assert run.result.metrics == {"length": 32.0, "entropy_bits": 256.0}
    assert "32 bytes decoded from hex" in run.result.evidence[0]
    short = run_one(
        "secret.strength",
        "{source: {env: HEX_KEY}, encoding: hex}",
        env={"HEX_KEY": secrets.token_hex(12)},
    )
    assert "too short: 12 bytes decoded from hex, at least 32 required" in short.result.summary


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
@pytest.mark.parametrize("padding", [True, False])
def test_base64_standard_or_url_safe_with_or_without_padding(
    run_one: RunOne, encode: Callable[[bytes], bytes], padding: bool
) -> None:
    text = encode(os.urandom(40)[:31] + b"\xfb\xff").decode()  # \xfb\xff: '+/' or '-_' in it
    text = text if padding else text.rstrip("=")
    run = run_one(
        "secret.strength", "{source: {env: B64_KEY}, encoding: base64}", env={"B64_KEY": text}
    )
    assert run.result.status is Status.PASS, run.shown
    assert run.result.metrics["length"] == 33


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "not*base64*at*all*",
            "is not base64: the character at position 4 is outside the base64 alphabet",
        ),
        ("abcde", "is not base64: no base64 text is 5 characters long"),
        ("ab+c-d==", "is not base64: it mixes the standard (+ /) and url-safe (- _) alphabets"),
        ("abc=d===", "is not base64: the character at position 4 is outside the base64 alphabet"),
    ],
)
def test_base64_that_does_not_decode_fails_with_a_clear_message(
    run_one: RunOne, value: str, message: str
) -> None:
    run = run_one(
        "secret.strength", "{source: {env: B64_KEY}, encoding: base64}", env={"B64_KEY": value}
    )
    assert run.result.status is Status.FAIL
    assert run.result.summary == f"env B64_KEY {message}"


def test_hex_that_does_not_decode_fails(run_one: RunOne) -> None:
    odd = run_one(
        "secret.strength", "{source: {env: HEX_KEY}, encoding: hex}", env={"HEX_KEY": "abc"}
    )
    assert odd.result.summary == "env HEX_KEY is not hex: 3 digits, an odd number"
    bad = run_one(
        "secret.strength", "{source: {env: HEX_KEY}, encoding: hex}", env={"HEX_KEY": "abzz"}
    )
    assert "position 3 is not a hex digit" in bad.result.summary


def test_a_base64_encoded_password_is_judged_as_the_password(run_one: RunOne) -> None:
    run = run_one(
        "secret.strength",
        "{source: {env: B64_KEY}, encoding: base64, min_length: 16}",
        env={"B64_KEY": base64.b64encode(b"hunter2hunter2hunter2hunter2").decode()},
    )
    assert run.result.status is Status.FAIL
    assert "hunter2hunter2hunter2hunter2" in run.engine.redactor


# -- presets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "good_bytes", "short_bytes"),
    [("jwt_hs256", 32, 16), ("jwt_hs384", 48, 32), ("jwt_hs512", 64, 48)],
)
def test_jwt_presets_want_a_key_as_long_as_the_hash(
    run_one: RunOne, preset: str, good_bytes: int, short_bytes: int
) -> None:
    good = run_one(
        "secret.strength",
        f"{{source: {{env: JWT_KEY}}, encoding: base64, preset: {preset}}}",
        env={"JWT_KEY": base64.b64encode(os.urandom(good_bytes)).decode()},
    )
    assert good.result.status is Status.PASS, good.shown
    assert "RFC 7518" in good.result.evidence[1]
    short = run_one(
        "secret.strength",
        f"{{source: {{env: JWT_KEY}}, encoding: base64, preset: {preset}}}",
        env={"JWT_KEY": base64.b64encode(os.urandom(short_bytes)).decode()},
    )
    assert short.result.status is Status.FAIL
    assert (
        f"too short: {short_bytes} bytes decoded from base64, at least {good_bytes} required"
        in (short.result.summary)
    )


def test_a_raw_jwt_key_must_be_long_enough_to_carry_the_bits(run_one: RunOne) -> None:
    # 32 characters of letters and digits carry ~190 bits: too few for HS256.
    raw = run_one(
        "secret.strength",
        "{source: {env: JWT_KEY}, preset: jwt_hs256}",
        env={"JWT_KEY": secrets.token_hex(16)},
    )
    assert raw.result.status is Status.FAIL
    assert "at least 256 required" in raw.result.summary


def test_django_preset_wants_fifty_characters(run_one: RunOne) -> None:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*(-_=+)"
    good = "".join(secrets.choice(alphabet) for _ in range(50))
    passing = run_one(
        "secret.strength",
        "{source: {env: DJANGO_SECRET_KEY}, preset: django}",
        env={"DJANGO_SECRET_KEY": good},
    )
    assert passing.result.status is Status.PASS, passing.shown
    failing = run_one(
        "secret.strength",
        "{source: {env: DJANGO_SECRET_KEY}, preset: django}",
        env={"DJANGO_SECRET_KEY": good[:40]},
    )
    assert "too short: 40 characters, at least 50 required" in failing.result.summary


def test_flask_preset_wants_160_bits(run_one: RunOne) -> None:
    passing = run_one(
        "secret.strength",
        "{source: {env: FLASK_KEY}, preset: flask}",
        env={"FLASK_KEY": secrets.token_hex()},
    )
    assert passing.result.status is Status.PASS, passing.shown
    failing = run_one(
        "secret.strength",
        "{source: {env: FLASK_KEY}, preset: flask}",
        env={"FLASK_KEY": secrets.token_hex(16)},
    )
    assert "at least 160 required" in failing.result.summary


def test_fernet_preset_wants_32_url_safe_base64_bytes(run_one: RunOne) -> None:
    from cryptography.fernet import Fernet

    good = run_one(
        "secret.strength",
        "{source: {env: FERNET_KEY}, preset: fernet}",
        env={"FERNET_KEY": Fernet.generate_key().decode()},
    )
    assert good.result.status is Status.PASS, good.shown
    assert good.result.metrics["length"] == 32
    short = run_one(
        "secret.strength",
        "{source: {env: FERNET_KEY}, preset: fernet}",
        env={"FERNET_KEY": base64.urlsafe_b64encode(os.urandom(16)).decode()},
    )
    assert "a Fernet key is exactly 32" in short.result.summary
    standard = base64.b64encode(os.urandom(30) + b"\xfb\xff").decode()
    assert "+" in standard or "/" in standard
    not_urlsafe = run_one(
        "secret.strength",
        "{source: {env: FERNET_KEY}, preset: fernet}",
        env={"FERNET_KEY": standard},
    )
    assert "a Fernet key is url-safe base64" in not_urlsafe.result.summary


def test_an_unknown_preset_is_a_profile_error_with_its_line(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    path = write_profile(
        """
        checks:
          - id: jwt
            type: secret.strength
            with:
              source: {env: JWT_KEY}
              preset: jwt_hs999
        """
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert re.search(r"profile\.yaml:6:\d+", result.stderr), result.stderr
    assert "checks[jwt].with.preset" in result.stderr
    assert "jwt_hs256" in result.stderr and "'jwt_hs999'" in result.stderr


def test_fernet_cannot_be_read_as_hex(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    path = write_profile(
        "checks: [{id: f, type: secret.strength, with: {source: {env: K}, preset: fernet, encoding: hex}}]\n"
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert "preset fernet reads the key as url-safe base64" in result.stderr


# -- sources and bad input ---------------------------------------------------------------------


def test_an_unset_variable_fails_naming_it(
    run_one: RunOne, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    run = run_one("secret.strength", "{source: {env: NOT_SET_ANYWHERE}}")
    assert run.result.status is Status.FAIL
    assert run.result.summary == "environment variable NOT_SET_ANYWHERE is not set"


def test_an_unset_variable_interpolated_into_the_profile_is_a_profile_error(
    write_profile: Callable[..., Path],
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = write_profile(
        """
        checks:
          - id: jwt
            type: secret.strength
            with:
              source: {value: "${env:NOT_SET_ANYWHERE}"}
        """
    )
    result = cli("run", path)
    assert result.exit_code == 2
    assert "environment variable NOT_SET_ANYWHERE is not set" in result.stderr
    assert re.search(r"profile\.yaml:5:\d+", result.stderr), result.stderr


def test_a_value_from_the_profile_is_checked_too(run_one: RunOne) -> None:
    run = run_one("secret.strength", f"{{source: {{value: '{STRONG}', name: session key}}}}")
    assert run.result.status is Status.PASS
    assert run.result.evidence[0].startswith("session key: ")


def test_an_empty_value_fails(run_one: RunOne) -> None:
    run = run_one("secret.strength", "{source: {env: EMPTY_KEY}}", env={"EMPTY_KEY": ""})
    assert run.result.status is Status.FAIL
    assert run.result.summary == "env EMPTY_KEY is empty"


def test_an_environment_value_that_is_not_utf8_fails(
    write_profile: Callable[..., Path], readycheck_process: Callable[..., CliResult]
) -> None:
    path = write_profile(
        "checks: [{id: s, type: secret.strength, with: {source: {env: BAD_KEY}}}]\n"
    )
    # os.environ holds bytes that are not UTF-8 as surrogate escapes; the child gets bytes.
    result = readycheck_process("run", path, env={"BAD_KEY": "abc\udcff\udcfe" + STRONG})
    assert result.exit_code == 1, result.output
    assert "env BAD_KEY is not UTF-8 text" in result.stdout


def test_a_value_with_a_line_break_fails(run_one: RunOne) -> None:
    run = run_one(
        "secret.strength", "{source: {env: TWO_LINES}}", env={"TWO_LINES": STRONG + "\n" + STRONG}
    )
    assert run.result.summary == "env TWO_LINES contains a line break"
    assert STRONG in run.engine.redactor  # each line may be the real secret


def test_a_secret_file_loses_its_trailing_newline(run_one: RunOne, tmp_path: Path) -> None:
    (tmp_path / "jwt_key").write_text(STRONG + "\n")
    run = run_one("secret.strength", "{source: {file: jwt_key}}")
    assert run.result.status is Status.PASS, run.shown
    assert run.result.metrics["length"] == len(STRONG)
    assert run.result.evidence[0].startswith("file jwt_key: ")
    assert STRONG in run.engine.redactor


def test_a_file_with_a_nul_fails(run_one: RunOne, tmp_path: Path) -> None:
    (tmp_path / "jwt_key").write_bytes(STRONG.encode() + b"\x00tail")
    run = run_one("secret.strength", "{source: {file: jwt_key}}")
    assert run.result.summary == "file jwt_key contains a NUL character"


def test_a_missing_secret_file_fails(run_one: RunOne) -> None:
    run = run_one("secret.strength", "{source: {file: /run/secrets/not-mounted-here}}")
    assert run.result.status is Status.FAIL
    assert run.result.summary == "/run/secrets/not-mounted-here does not exist"


def test_a_directory_is_not_a_secret_file(run_one: RunOne, tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    run = run_one("secret.strength", "{source: {file: secrets}}")
    assert run.result.summary == "secrets is a directory, not a file"


def test_a_fifo_is_not_read(run_one: RunOne, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    run = run_one("secret.strength", "{source: {file: pipe}}")
    assert run.result.summary == "pipe is not a regular file"


def test_a_non_utf8_file_fails_without_showing_the_byte(run_one: RunOne, tmp_path: Path) -> None:
    (tmp_path / "binary_key").write_bytes(b"abc\xe9\xff" + os.urandom(8))
    run = run_one("secret.strength", "{source: {file: binary_key}}")
    assert run.result.status is Status.FAIL
    assert run.result.summary == "binary_key is not UTF-8 text (undecodable byte at offset 3)"
    assert "0xe9" not in run.shown and "\\xe9" not in run.shown


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_an_error(run_one: RunOne, tmp_path: Path) -> None:
    key = tmp_path / "jwt_key"
    key.write_text(STRONG)
    key.chmod(0)
    run = run_one("secret.strength", "{source: {file: jwt_key}}")
    assert run.result.status is Status.ERROR
    assert "permission denied" in run.result.summary


def test_a_file_readycheck_may_not_read_is_an_error_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root (CI) no file is unreadable, so the refusal is simulated.
    key = tmp_path / "jwt_key"
    key.write_text(STRONG)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(SourceProblem) as caught:
        read_file_bytes(key, "jwt_key")
    assert caught.value.status == "ERROR"
    assert caught.value.message == "jwt_key cannot be read (permission denied)"


def test_a_secret_from_a_dotenv_file(run_one: RunOne, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"# app settings\nexport SECRET_KEY='{STRONG}'\nDEBUG=0\n")
    run = run_one("secret.strength", "{source: {dotenv: .env, key: SECRET_KEY}}")
    assert run.result.status is Status.PASS, run.shown
    assert run.result.evidence[0].startswith("SECRET_KEY in .env: ")
    assert "SECRET_KEY" not in os.environ or os.environ["SECRET_KEY"] != STRONG  # never exported


def test_dotenv_problems_fail_clearly(run_one: RunOne, tmp_path: Path) -> None:
    missing = run_one("secret.strength", "{source: {dotenv: .env, key: SECRET_KEY}}")
    assert missing.result.summary == ".env does not exist"
    (tmp_path / ".env").write_text("OTHER=1\nbroken line\nNAKED\n")
    absent = run_one("secret.strength", "{source: {dotenv: .env, key: SECRET_KEY}}")
    assert absent.result.summary == ".env has no variable SECRET_KEY (lines it could not parse: 2)"
    naked = run_one("secret.strength", "{source: {dotenv: .env, key: NAKED}}")
    assert naked.result.summary == "NAKED is declared without a value in .env"
    (tmp_path / ".env").unlink()
    (tmp_path / ".env").write_bytes(b"SECRET_KEY=\xff\xfe\n")
    binary = run_one("secret.strength", "{source: {dotenv: .env, key: SECRET_KEY}}")
    assert binary.result.summary == ".env is not UTF-8 text (undecodable byte at offset 11)"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{}", "give exactly one of env: NAME"),
        ("{env: A, file: b}", "got env, file"),
        ("{dotenv: .env}", "dotenv: PATH needs key: NAME"),
        ("{env: A, key: B}", "key: is only used with dotenv: PATH"),
        ("{env: ''}", "env: is empty"),
    ],
)
def test_a_source_names_exactly_one_place(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult], source: str, message: str
) -> None:
    path = write_profile(
        f"checks: [{{id: s, type: secret.strength, with: {{source: {source}}}}}]\n"
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert message in result.stderr


def test_environment_values_are_masked_from_the_moment_the_profile_loads(
    write_profile: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_SIGNING", STRONG)
    path = write_profile(
        "checks: [{id: s, type: secret.strength, with: {source: {env: APP_SIGNING}}}]\n"
    )
    assert STRONG in load_profile(path).secrets


# -- secret.distinct ----------------------------------------------------------------------------


def test_distinct_secrets_pass(run_one: RunOne, tmp_path: Path) -> None:
    (tmp_path / "jwt_key").write_text(secrets.token_urlsafe(40) + "\n")
    run = run_one(
        "secret.distinct",
        "{sources: [{env: SESSION_KEY}, {file: jwt_key}]}",
        env={"SESSION_KEY": STRONG},
    )
    assert run.result.status is Status.PASS
    assert run.result.summary == "2 secrets, all different"
    assert run.result.evidence[0].startswith(
        f"env SESSION_KEY: {len(STRONG)} characters, fingerprint "
    )


def test_a_key_reused_for_two_purposes_fails_naming_both(run_one: RunOne, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"JWT_SECRET={STRONG}\n")
    run = run_one(
        "secret.distinct",
        "{sources: [{env: SESSION_KEY}, {env: CSRF_KEY}, {dotenv: .env, key: JWT_SECRET}]}",
        env={"SESSION_KEY": STRONG, "CSRF_KEY": "Zq8-" + secrets.token_urlsafe(40)},
    )
    assert run.result.status is Status.FAIL
    assert run.result.summary == "env SESSION_KEY and JWT_SECRET in .env hold the same value"
    assert_value_not_shown(run, STRONG)


def test_distinct_fails_naming_a_source_that_is_unset(
    run_one: RunOne, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    run = run_one(
        "secret.distinct",
        "{sources: [{env: SESSION_KEY}, {env: NOT_SET_ANYWHERE}]}",
        env={"SESSION_KEY": STRONG},
    )
    assert run.result.status is Status.FAIL
    assert run.result.summary == "environment variable NOT_SET_ANYWHERE is not set"


def test_distinct_needs_two_different_sources(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    one = write_profile("checks: [{id: d, type: secret.distinct, with: {sources: [{env: A}]}}]\n")
    assert "at least 2 items" in cli("validate", one).stderr
    twice = write_profile(
        "checks: [{id: d, type: secret.distinct, with: {sources: [{env: A}, {env: A}]}}]\n"
    )
    assert "env A is listed more than once" in cli("validate", twice).stderr
