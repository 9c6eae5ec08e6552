"""Loading profiles: interpolation, extends, defaults, and every bad input the core
issue lists (exit 2, file:line shown, nothing run, no traceback)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from readycheck.errors import ProfileError
from readycheck.profile import load_profile
from readycheck.units import Duration
from tests.conftest import CliResult

GOOD = """
version: 1
name: payments-api
environment: production
vars: {api: "https://api.example.com", port: 8080}
defaults: {timeout: 3s, retries: 1, severity: medium}
gate: {fail_on: high}
checks:
  - id: ready
    type: test.sleep
    severity: critical
    tags: [http]
    with: {summary: "${vars.api}/health/ready"}
  - id: slow
    type: test.sleep
    timeout: 250ms
    needs: [ready]
    with: {seconds: 0}
waivers:
  - {check: slow, reason: warming, approved_by: rm, until: 2026-12-31}
"""


def test_a_profile_loads_with_defaults_applied(write_profile: Callable[..., Path]) -> None:
    profile = load_profile(write_profile(GOOD), environ={})
    ready, slow = profile.checks
    assert profile.name == "payments-api"
    assert profile.environment == "production"
    assert ready.params.summary == "https://api.example.com/health/ready"  # type: ignore[attr-defined]
    assert ready.severity.value == "critical" and slow.severity.value == "medium"
    assert ready.timeout == Duration("3s") and slow.timeout == Duration("250ms")
    assert ready.retries == 1
    assert slow.needs == ("ready",)
    assert profile.waivers[0].until == date(2026, 12, 31)
    assert profile.digest.startswith("sha256:")


def test_env_interpolation_with_defaults_and_escapes(write_profile: Callable[..., Path]) -> None:
    path = write_profile(
        """
        vars: {port: 8080}
        checks:
          - id: a
            type: test.sleep
            with:
              summary: "${env:HOST}:${vars.port} ${env:MISSING:-fallback} $${env:LITERAL} ${env:EMPTY:-was-empty}"
              seconds: ${vars.port}
        """
    )
    profile = load_profile(path, environ={"HOST": "db.internal", "EMPTY": ""})
    params = profile.checks[0].params
    assert params.summary == "db.internal:8080 fallback ${env:LITERAL} was-empty"  # type: ignore[attr-defined]
    assert params.seconds == 8080  # type: ignore[attr-defined]


def test_values_of_secret_looking_variables_are_registered_for_redaction(
    write_profile: Callable[..., Path],
) -> None:
    path = write_profile(
        """
        checks:
          - id: a
            type: test.sleep
            with: {summary: "${env:API_TOKEN} ${env:PLAIN}"}
          - id: b
            type: test.secret
            with: {token: "literal-canary"}
        """
    )
    profile = load_profile(path, environ={"API_TOKEN": "tok-123", "PLAIN": "visible"})
    assert "tok-123" in profile.secrets
    assert "literal-canary" in profile.secrets
    assert "visible" not in profile.secrets


def test_cli_vars_override_profile_vars(write_profile: Callable[..., Path]) -> None:
    path = write_profile(
        """
        vars: {where: profile}
        checks: [{id: a, type: test.sleep, with: {summary: "${vars.where}"}}]
        """
    )
    profile = load_profile(path, environ={}, variables={"where": "cli"})
    assert profile.checks[0].params.summary == "cli"  # type: ignore[attr-defined]


def test_extends_merges_checks_by_id_and_later_wins(write_profile: Callable[..., Path]) -> None:
    write_profile(
        """
        name: base
        vars: {greeting: hello}
        gate: {fail_on: critical}
        checks:
          - {id: a, type: test.sleep, severity: low, with: {summary: base-a, seconds: 1}}
          - {id: b, type: test.sleep, with: {summary: base-b}}
        """,
        "base.yaml",
    )
    (Path(write_profile("", "unused.yaml")).parent / "sub").mkdir()
    child = write_profile(
        """
        extends: base.yaml
        name: child
        checks:
          - {id: a, severity: critical, with: {summary: "${vars.greeting} child-a"}}
          - {id: c, type: test.sleep}
        """,
        "child.yaml",
    )
    profile = load_profile(child, environ={})
    by_id = {check.id: check for check in profile.checks}
    assert [check.id for check in profile.checks] == ["a", "b", "c"]
    assert profile.name == "child"
    assert by_id["a"].severity.value == "critical"
    assert by_id["a"].params.summary == "hello child-a"  # type: ignore[attr-defined]
    assert by_id["a"].params.seconds == 1  # type: ignore[attr-defined]
    assert profile.gate.fail_on.value == "critical"
    assert [p.name for p in profile.files] == ["child.yaml", "base.yaml"]


def test_changing_a_checks_type_in_a_child_replaces_it_whole(
    write_profile: Callable[..., Path],
) -> None:
    write_profile("checks: [{id: a, type: test.sleep, with: {seconds: 1}}]\n", "base.yaml")
    child = write_profile(
        "extends: base.yaml\nchecks: [{id: a, type: file, with: {path: x}}]\n", "child.yaml"
    )
    assert load_profile(child, environ={}).checks[0].type.name == "file"


# -- bad input: each is exit 2, names the place, runs nothing, shows no traceback ----------

BAD_PROFILES = {
    "empty": ("", r"profile.yaml:1:1: the profile is empty"),
    "not a mapping": (
        "- a\n- b\n",
        r"profile.yaml:1:1: the top level of a profile must be a mapping",
    ),
    "yaml syntax": (
        "checks:\n  - id: a\n    with: {argv: [x]\n",
        r"profile.yaml:4:1: YAML syntax error: (did not find )?expected ',' or '}'",
    ),
    "unknown top-level key": (
        "chekcs: []\n",
        r"profile.yaml:1:9: chekcs: unknown key 'chekcs'; did you mean 'checks'\?",
    ),
    "unknown check type": (
        "checks:\n  - id: a\n    type: comand\n    with: {argv: [x]}\n",
        r"profile.yaml:3:11: checks\[a\].type: unknown check type 'comand'; did you mean 'command'\?",
    ),
    "duplicate check id": (
        "checks:\n  - {id: a, type: test.sleep}\n  - {id: a, type: test.sleep}\n",
        r"profile.yaml:3:10: checks\[a\].id: duplicate check id 'a' \(first defined at line 2\)",
    ),
    "needs unknown id": (
        "checks:\n  - {id: a, type: test.sleep, needs: [bb]}\n  - {id: b, type: test.sleep}\n",
        r"profile.yaml:2:39: checks\[a\].needs: needs unknown check 'bb'; did you mean 'b'\?",
    ),
    "needs cycle": (
        "checks:\n  - {id: a, type: test.sleep, needs: [b]}\n  - {id: b, type: test.sleep, needs: [a]}\n",
        r"profile.yaml:2:38: checks\[a\].needs: 'needs' forms a cycle: a -> b -> a",
    ),
    "bad duration": (
        "checks:\n  - id: a\n    type: test.sleep\n    timeout: 10 sec\n",
        r"profile.yaml:4:14: checks\[a\].timeout: '10 sec' is not a duration",
    ),
    "bad parameter type": (
        "checks:\n  - id: a\n    type: test.sleep\n    with:\n      seconds: soon\n",
        r"profile.yaml:5:16: checks\[a\].with.seconds: Input should be a valid number.*\(got 'soon'\)",
    ),
    "unknown parameter": (
        "checks:\n  - id: a\n    type: command\n    with: {argv: [x], cdw: /tmp}\n",
        r"profile.yaml:4:28: checks\[a\].with.cdw: unknown key 'cdw'; did you mean 'cwd'\?",
    ),
    "unset env without default": (
        "checks:\n  - id: a\n    type: test.sleep\n    with: {summary: '${env:READYCHECK_UNSET_VAR}'}\n",
        r"profile.yaml:4:21: checks\[a\].with.summary: environment variable READYCHECK_UNSET_VAR is not set",
    ),
    "extends missing file": (
        "extends: nowhere.yaml\n",
        r"profile.yaml:1:10: extends: extended profile nowhere.yaml does not exist",
    ),
    "waiver for unknown check": (
        "checks: [{id: a, type: test.sleep}]\n"
        "waivers: [{check: aa, reason: r, approved_by: x, until: 2026-12-31}]\n",
        r"profile.yaml:2:19: waivers.check: waiver for unknown check 'aa'; did you mean 'a'\?",
    ),
    "waiver until not a date": (
        "checks: [{id: a, type: test.sleep}]\n"
        "waivers: [{check: a, reason: r, approved_by: x, until: next week}]\n",
        r"profile.yaml:2:56: waivers\[a\].until: Input should be a valid date",
    ),
    "unsupported version": (
        "version: 2\nchecks: []\n",
        r"profile.yaml:1:10: version: Input should be 1",
    ),
    "alias bomb": (
        'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n"
            for i in range(7)
        ),
        r"profile.yaml:\d+:\d+: the document expands to more than 100000 values",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_bad_profiles_exit_2_with_the_place_and_no_traceback(
    case: str, write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    text, expected = BAD_PROFILES[case]
    path = write_profile(text)
    for command in ("validate", "run"):
        result = cli(command, path)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""  # nothing ran, nothing reported
        assert "Traceback" not in result.output
        import re

        assert re.search(expected, result.stderr), result.stderr


def test_extends_cycle_is_refused(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    write_profile("extends: two.yaml\n", "one.yaml")
    two = write_profile("extends: one.yaml\nchecks: []\n", "two.yaml")
    result = cli("validate", two)
    assert result.exit_code == 2
    assert (
        "one.yaml:1:10: extends: 'extends' forms a cycle: two.yaml -> one.yaml -> two.yaml"
        in result.stderr
    )


def test_profile_path_missing_directory_or_binary(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    (tmp_path / "bin.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "dir.yaml").mkdir()
    cases = {
        tmp_path / "missing.yaml": "does not exist",
        tmp_path / "dir.yaml": "is a directory",
        tmp_path / "bin.yaml": "not a text file",
    }
    for path, message in cases.items():
        result = cli("validate", path)
        assert result.exit_code == 2
        assert message in result.stderr
        assert "Traceback" not in result.output


def test_all_problems_are_reported_at_once(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    path = write_profile(
        """
        checks:
          - {id: a, type: test.sleep, needs: [zz]}
          - {id: b, type: nope}
          - {id: c, type: test.sleep, with: {seconds: x}}
        """
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert "3 profile errors" in result.stderr
    for fragment in ("unknown check 'zz'", "unknown check type 'nope'", "checks[c].with.seconds"):
        assert fragment in result.stderr


def test_load_errors_never_show_secret_values(write_profile: Callable[..., Path]) -> None:
    path = write_profile(
        """
        checks:
          - id: a
            type: test.sleep
            with: {seconds: "${env:DB_PASSWORD}"}
        """
    )
    with pytest.raises(ProfileError) as caught:
        load_profile(path, environ={"DB_PASSWORD": "hunter2-canary"})
    assert "hunter2-canary" not in str(caught.value)
    assert "checks[a].with.seconds" in str(caught.value)


def test_validate_lists_checks_and_runs_nothing(
    write_profile: Callable[..., Path], cli: Callable[..., CliResult]
) -> None:
    marker = write_profile("", "marker")
    marker.unlink()
    path = write_profile(
        f"""
        checks:
          - {{id: touch, type: command, with: {{argv: [touch, "{marker}"]}}}}
        """
    )
    result = cli("validate", path)
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout and "touch" in result.stdout
    assert not marker.exists()


def test_the_readme_profile_example_loads(tmp_path: Path) -> None:
    import re

    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    example = re.search(r"## A profile\n\n```yaml\n(.*?)```", readme, re.DOTALL)
    assert example is not None
    path = tmp_path / "example.yaml"
    path.write_text(example.group(1))
    profile = load_profile(path, environ={"DJANGO_SECRET_KEY": "k" * 50})
    assert [check.id for check in profile.checks] == [
        "dockerfile-healthcheck",
        "django-deploy-checks",
    ]
    assert "k" * 50 in profile.secrets


def test_a_type_with_its_own_default_timeout_gets_it_unless_told_otherwise(
    write_profile: Callable[..., Path],
) -> None:
    path = write_profile(
        """
        defaults: {timeout: 10s}
        checks:
          - {id: probe, type: test.patient}
          - {id: told, type: test.patient, timeout: 5s}
          - {id: plain, type: test.sleep}
        """
    )
    probe, told, plain = load_profile(path, environ={}).checks
    assert (probe.timeout, told.timeout, plain.timeout) == (
        Duration("45s"),
        Duration("5s"),
        Duration("10s"),
    )
    longer = write_profile(
        "defaults: {timeout: 2m}\nchecks: [{id: p, type: test.patient}]\n", "b.yaml"
    )
    assert load_profile(longer, environ={}).checks[0].timeout == Duration("2m")
