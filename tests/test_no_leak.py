"""readycheck never shows a secret: the no-leak guarantee, tested end to end.

Full profiles whose secret values are unique canary strings run through the real CLI
(``python -m readycheck run ... --json --junit --report --log --debug``) on every path
that could print a secret: PASS, FAIL, ERROR, a check that raises, a timeout, retries,
``--debug`` tracebacks, an interrupted run, a malformed DSN, and commands whose output
holds the canary. The console, the JSON, the JUnit XML, the Markdown report and the log
must hold no canary, nor its base64 or URL-encoded forms.

Check families join by adding rows to ``CASES``: a check type, its ``with:`` block, the
canaries it carries, and the environment and files it needs. Templates fill
``<<name>>`` from the case's canaries, ``<<python>>`` with this interpreter, and
``<<fixture.attribute>>`` from the pytest fixtures the case names (a database's DSN).
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import CliResult


def canary(tag: str) -> str:
    """A unique value that looks like a strong secret and changes under URL-encoding and
    base64 (``/ + & =``); in a URL's userinfo its ``/`` makes the URL malformed."""
    return f"{tag}-Cn/{secrets.token_urlsafe(18)}+&="


def leaked_forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


def decoded(where: str, text: str) -> str:
    """An output as its reader sees it: XML entities and Markdown escapes undone, JSON
    strings decoded (a canary escaped as ``&amp;`` or ``\\_`` is still a leak)."""
    views = [text]
    if where == "junit":
        views.append(html.unescape(text))
    if where == "report":
        views.append(re.sub(r"\\(.)", r"\1", text))
    if where == "json":
        views.append("\n".join(_strings(json.loads(text))))
    return "\n".join(views)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *_strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def assert_no_leak(outputs: Mapping[str, str], canaries: Mapping[str, str]) -> None:
    leaks = [
        f"{name} ({form!r}) in {where}"
        for where, text in outputs.items()
        for name, secret in canaries.items()
        for form in leaked_forms(secret)
        if form in decoded(where, text)
    ]
    assert not leaks, "secrets leaked: " + "; ".join(leaks)


@dataclass(frozen=True)
class LeakCase:
    """One check in the no-leak profiles.

    ``with_`` is its ``with:`` block (YAML), ``options`` other keys of the check (YAML
    lines, e.g. ``timeout: 300ms``); ``canaries`` names the secrets it carries, made
    fresh for each run; ``env`` and ``files`` are set and written for it (templated too);
    ``expect`` is the status it must end with when the run is not interrupted, so that
    each path is really taken; ``fixtures`` are pytest fixtures the templates read.
    """

    id: str
    type: str
    with_: str
    canaries: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    options: str = ""
    expect: str = "FAIL"
    fixtures: tuple[str, ...] = ()


CASES: list[LeakCase] = [
    # -- core check types and the test types -------------------------------------------------
    *[
        LeakCase(
            id=f"test-secret-{outcome.lower()}",
            type="test.secret",
            with_=f"{{token: '<<token>>', outcome: {outcome}}}",
            canaries=("token",),
            expect={"RAISE": "ERROR"}.get(outcome, outcome),
        )
        for outcome in ("PASS", "FAIL", "ERROR", "RAISE")
    ],
    LeakCase(
        id="test-secret-timeout",
        type="test.secret",
        with_="{token: '<<token>>', outcome: PASS, delay: 5s}",
        canaries=("token",),
        options="timeout: 300ms",
        expect="ERROR",
    ),
    LeakCase(
        id="command-echoes-its-secret-env",
        type="command",
        with_="""
          argv: [sh, -c, 'echo "token=$API_TOKEN"; printf %s "$API_TOKEN" | base64;
            <<python>> -c "import os, urllib.parse as u; print(u.quote(os.environ[chr(65)+\\"PI_TOKEN\\"]))";
            echo "$API_TOKEN" >&2; exit 1']
          env: {API_TOKEN: "${env:LEAK_API_TOKEN}"}
        """,
        canaries=("api_token",),
        env={"LEAK_API_TOKEN": "<<api_token>>"},
    ),
    LeakCase(
        id="command-prints-a-url-encoded-dsn",
        type="command",
        with_="{argv: [sh, -c, 'echo connecting to postgresql://app:<<dsn_password_quoted>>@db:5432/app; exit 2']}",
        canaries=("dsn_password",),
    ),
    LeakCase(
        id="command-prints-a-malformed-dsn",
        type="command",
        with_="""
          argv: [sh, -c, 'echo "could not connect to $DATABASE_URL"; exit 2']
          env: {DATABASE_URL: "${env:LEAK_DATABASE_URL}"}
        """,
        canaries=("db_password",),
        env={"LEAK_DATABASE_URL": "postgresql://app:<<db_password>>@db:5432/app"},
    ),
    LeakCase(
        # Secrets in argv: an option named like a secret (--token VALUE, --password=VALUE),
        # one named in secret_args (-pVALUE, --signing VALUE), and arguments read from a
        # source; the command echoes them all and fails, so the summary shows its argv.
        id="command-with-secrets-in-argv",
        type="command",
        with_="""
          argv: [sh, -c, 'echo "$@"; exit 1', sh, --token, "${env:LEAK_ARGV_TOKEN}",
            "--password=<<argv_password>>", "-p<<argv_short>>", --signing, "<<argv_named>>",
            {env: LEAK_ARGV_SOURCE}, {file: argv_secret_file}]
          secret_args: [-p, --signing]
        """,
        canaries=(
            "argv_token",
            "argv_password",
            "argv_short",
            "argv_named",
            "argv_source",
            "argv_file",
        ),
        env={"LEAK_ARGV_TOKEN": "<<argv_token>>", "LEAK_ARGV_SOURCE": "<<argv_source>>"},
        files={"argv_secret_file": "<<argv_file>>\n"},
    ),
    LeakCase(
        id="shell-command-with-a-password-option",
        type="command",
        with_="""{argv: "echo connecting with --password <<shell_password>>; exit 1", shell: true}""",
        canaries=("shell_password",),
    ),
    # -- secret.strength and secret.distinct -----------------------------------------------------
    LeakCase(
        id="secret-strength-pass-env",
        type="secret.strength",
        with_="{source: {env: LEAK_SESSION_KEY}}",
        canaries=("session_key",),
        env={"LEAK_SESSION_KEY": "<<session_key>>"},
        expect="PASS",
    ),
    LeakCase(
        id="secret-strength-pass-file",
        type="secret.strength",
        with_="{source: {file: mounted_key}}",
        canaries=("mounted_key",),
        files={"mounted_key": "<<mounted_key>>\n"},
        expect="PASS",
    ),
    LeakCase(
        # Runs after the file was read: its output holds the value readycheck read at run time.
        id="command-prints-the-mounted-secret",
        type="command",
        with_="{argv: [sh, -c, 'cat mounted_key; exit 1']}",
        options="needs: [secret-strength-pass-file]",
        canaries=("mounted_key",),
    ),
    LeakCase(
        id="secret-strength-fail-dotenv",
        type="secret.strength",
        with_="{source: {dotenv: leak.env, key: JWT_SECRET}, preset: jwt_hs512, forbid_patterns: '^x'}",
        canaries=("jwt_secret", "other_token"),
        files={"leak.env": "OTHER_TOKEN=<<other_token>>\nexport JWT_SECRET='<<jwt_secret>>'\n"},
    ),
    LeakCase(
        id="secret-strength-two-lines",
        type="secret.strength",
        with_="{source: {file: two_lines}}",
        canaries=("first_line", "second_line"),
        files={"two_lines": "<<first_line>>\n<<second_line>>\n"},
    ),
    LeakCase(
        id="secret-strength-bad-base64",
        type="secret.strength",
        with_="{source: {env: LEAK_B64_KEY}, encoding: base64}",
        canaries=("b64_key",),
        env={"LEAK_B64_KEY": "<<b64_key>>"},
    ),
    LeakCase(
        id="secret-strength-value-from-profile",
        type="secret.strength",
        with_="{source: {value: '${env:LEAK_PLAIN_NAME}'}, require_patterns: '^sk_live_'}",
        canaries=("plain_name",),
        env={"LEAK_PLAIN_NAME": "<<plain_name>>"},
    ),
    LeakCase(
        id="secret-distinct-reused",
        type="secret.distinct",
        with_="{sources: [{env: LEAK_REUSED_KEY}, {file: reused_key}, {dotenv: leak.env, key: OTHER_TOKEN}]}",
        canaries=("reused_key", "other_token"),
        env={"LEAK_REUSED_KEY": "<<reused_key>>"},
        files={"reused_key": "<<reused_key>>"},
    ),
    # -- config.env -------------------------------------------------------------------------------
    LeakCase(
        id="config-env-secrets-fail",
        type="config.env",
        with_="""
          rules:
            - {name: STRIPE_API_KEY, matches: '^sk_live_'}
            - {name: LEAK_SESSION_SECRET, not_in: ['<<session_secret>>']}
            - {name: LEAK_LICENSE, secret: true, equals: other}
        """,
        canaries=("stripe_key", "session_secret", "license"),
        env={
            "STRIPE_API_KEY": "<<stripe_key>>",
            "LEAK_SESSION_SECRET": "<<session_secret>>",
            "LEAK_LICENSE": "<<license>>",
        },
    ),
    LeakCase(
        id="config-env-malformed-dsn-in-dotenv",
        type="config.env",
        with_="{source: {dotenv: app.env}, preset: production}",
        canaries=("app_db_password",),
        files={
            "app.env": "ENVIRONMENT=staging\nDATABASE_URL=postgresql://app:<<app_db_password>>@db:5432/app\n"
        },
    ),
    LeakCase(
        id="config-env-pass",
        type="config.env",
        with_="{rules: [{name: LEAK_API_TOKEN_2, matches: '-Cn/'}]}",
        canaries=("api_token_2",),
        env={"LEAK_API_TOKEN_2": "<<api_token_2>>"},
        expect="PASS",
    ),
]

# Checks that are still running when the interrupted run is stopped.
SLOW_CASES = [
    LeakCase(
        id="slow-test-secret",
        type="test.secret",
        with_="{token: '<<slow_token>>', outcome: PASS, delay: 60s}",
        canaries=("slow_token",),
        options="timeout: 90s",
    ),
    LeakCase(
        id="slow-command",
        type="command",
        with_="""
          argv: [sh, -c, 'echo "$SLOW_TOKEN"; sleep 60']
          env: {SLOW_TOKEN: "${env:LEAK_SLOW_TOKEN}"}
        """,
        canaries=("slow_env_token",),
        env={"LEAK_SLOW_TOKEN": "<<slow_env_token>>"},
        options="timeout: 90s",
    ),
]

_PLACEHOLDER = re.compile(r"<<([a-z_][a-z0-9_]*)((?:\.[a-z_][a-z0-9_]*)*)>>")


@dataclass
class Scenario:
    profile: Path
    env: dict[str, str]
    canaries: dict[str, str]
    outputs: dict[str, Path]

    def args(self) -> list[str | Path]:
        o = self.outputs
        return [
            "run",
            self.profile,
            "--json",
            o["json"],
            "--junit",
            o["junit"],
            "--report",
            o["report"],
            "--log",
            o["log"],
            "--debug",
        ]

    def texts(self, console: str) -> dict[str, str]:
        found = {"console": console}
        for name, path in self.outputs.items():
            assert path.exists(), f"--{name} was not written"
            found[name] = path.read_text()
        return found


def build(cases: list[LeakCase], directory: Path, request: pytest.FixtureRequest) -> Scenario:
    """Write a profile running ``cases`` (each failing check retried once), their files,
    and the environment that holds their secrets."""
    canaries: dict[str, str] = {}
    for case in cases:
        for name in case.canaries:
            canaries.setdefault(name, canary(name.replace("_", "")[:10]))
    if "dsn_password" in canaries:
        canaries["dsn_password_quoted"] = quote(canaries["dsn_password"], safe="")
    fixtures = {name: request.getfixturevalue(name) for case in cases for name in case.fixtures}

    def fill(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name, attributes = match.group(1), match.group(2)
            if name == "python":
                return sys.executable
            if name in canaries:
                return canaries[name]
            value: Any = fixtures[name]
            for attribute in attributes.strip(".").split("."):
                value = getattr(value, attribute)
            return str(value)

        return _PLACEHOLDER.sub(one, text)

    env: dict[str, str] = {"API_TOKEN": canary("signoff")}
    canaries["signoff_release"] = env["API_TOKEN"]
    lines = [
        "name: no-leak",
        # API_TOKEN looks secret: the release interpolated from it is masked in the report.
        'signoff: {service: svc, release: "${env:API_TOKEN}"}',
        "defaults: {retries: 1, retry_interval: 10ms, timeout: 20s}",
        "checks:",
    ]
    for case in cases:
        lines += [f"  - id: {case.id}", f"    type: {case.type}"]
        lines += [f"    {line.strip()}" for line in case.options.splitlines() if line.strip()]
        block = fill(case.with_).strip("\n")
        if "\n" in block:
            lines.append("    with:")
            indent = min(
                len(line) - len(line.lstrip()) for line in block.splitlines() if line.strip()
            )
            lines += [f"      {line[indent:]}" for line in block.splitlines()]
        else:
            lines.append(f"    with: {block.strip()}")
        env.update({name: fill(value) for name, value in case.env.items()})
        for name, content in case.files.items():
            (directory / name).write_text(fill(content))
    profile = directory / "no-leak.yaml"
    profile.write_text("\n".join(lines) + "\n")
    outputs = {
        "json": directory / "results.json",
        "junit": directory / "junit.xml",
        "report": directory / "report.md",
        "log": directory / "debug.log",
    }
    canaries.pop("dsn_password_quoted", None)
    return Scenario(profile, env, canaries, outputs)


def test_no_secret_shows_on_any_path(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    readycheck_process: Callable[..., CliResult],
) -> None:
    scenario = build(CASES, tmp_path, request)
    result = readycheck_process(*scenario.args(), cwd=tmp_path, env=scenario.env, timeout=120)
    assert result.exit_code == 1, result.output
    texts = scenario.texts(result.stdout + result.stderr)
    statuses = {c["id"]: c["status"] for c in json.loads(texts["json"])["checks"]}
    assert statuses == {case.id: case.expect for case in CASES}, texts["console"]
    assert "***" in texts["json"]
    assert "RuntimeError" in texts["console"] and "Traceback" in texts["console"]
    assert "attempt 2" in texts["console"]  # failing checks were retried
    assert_no_leak(texts, scenario.canaries)


def test_no_secret_shows_when_the_run_is_interrupted(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    subprocess_env: dict[str, str],
) -> None:
    scenario = build([*CASES, *SLOW_CASES], tmp_path, request)
    process = subprocess.Popen(
        [sys.executable, "-m", "readycheck", *map(str, scenario.args())],
        cwd=tmp_path,
        env={**subprocess_env, **scenario.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    console: list[str] = []
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: console.extend(iter(process.stdout.readline, ""))),  # type: ignore[union-attr]
        threading.Thread(target=lambda: errors.extend(iter(process.stderr.readline, ""))),  # type: ignore[union-attr]
    ]
    for reader in readers:
        reader.start()
    try:
        # Wait until every check but the slow ones has finished (the --debug log says so on
        # stderr), then press Ctrl-C.
        waiting_for = {case.id for case in CASES}
        give_up = time.monotonic() + 60
        while waiting_for and time.monotonic() < give_up and process.poll() is None:
            finished = re.findall(r"DEBUG readycheck: (\S+) finished: ", "".join(list(errors)))
            waiting_for -= set(finished)
            time.sleep(0.05)
        assert not waiting_for, f"still running: {waiting_for}\n{''.join(console + errors)}"
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        for reader in readers:
            reader.join(timeout=10)
    output = "".join(console) + "".join(errors)
    assert code == 130, output
    texts = scenario.texts(output)
    document = json.loads(texts["json"])
    assert document["verdict"] == "INTERRUPTED"
    statuses = {c["id"]: c["status"] for c in document["checks"]}
    assert statuses["slow-test-secret"] == statuses["slow-command"] == "ERROR"
    assert_no_leak(texts, scenario.canaries)


def test_every_case_names_a_check_type_that_is_installed(cli: Callable[..., CliResult]) -> None:
    listed = cli("checks").stdout
    for case in [*CASES, *SLOW_CASES]:
        assert case.type in listed, case.type


def test_secrets_read_at_run_time_are_masked_in_checks_that_finish_first(
    tmp_path: Path, readycheck_process: Callable[..., CliResult]
) -> None:
    # The command prints the mounted key and the .env file, and finishes before the checks
    # that read them start (they need it): its output must be masked all the same.
    key, session = canary("mounted"), canary("dotenv")
    (tmp_path / "jwt_key").write_text(key + "\n")
    (tmp_path / ".env").write_text(f"SESSION_SECRET={session}\nDEBUG=false\n")
    profile = tmp_path / "early.yaml"
    profile.write_text(
        "checks:\n"
        "  - {id: printer, type: command, with: {argv: [sh, -c, 'cat jwt_key .env']}}\n"
        "  - {id: jwt, type: secret.strength, needs: [printer], with: {source: {file: jwt_key}}}\n"
        "  - {id: env, type: config.env, needs: [printer],\n"
        "     with: {source: {dotenv: .env}, rules: [{name: DEBUG, equals: false}]}}\n"
    )
    out = tmp_path / "r.json"
    result = readycheck_process("run", profile, "--json", out, cwd=tmp_path)
    statuses = {c["id"]: c["status"] for c in json.loads(out.read_text())["checks"]}
    assert statuses == {"printer": "PASS", "jwt": "PASS", "env": "PASS"}, result.output
    assert "> ***" in out.read_text()
    assert_no_leak(
        {"console": result.output, "json": out.read_text()}, {"key": key, "session": session}
    )
