"""The `command` and `file` check types, against real processes and files."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from readycheck.profile import load_profile
from readycheck.results import CheckResult, Status
from tests.conftest import RunCheck

RunOne = Callable[..., CheckResult]


@pytest.fixture
def run_one(run_check: RunCheck) -> RunOne:
    """Run a single check given its type and `with:` block (YAML flow text)."""
    return lambda *args, **kwargs: run_check(*args, **kwargs).result


# -- command -----------------------------------------------------------------------------


def test_a_command_passes_on_the_expected_exit_status(run_one: RunOne) -> None:
    result = run_one("command", "{argv: [sh, -c, 'echo all good; exit 0']}")
    assert result.status is Status.PASS
    assert result.summary == "sh -c 'echo all good; exit 0': exit status 0"
    assert "> all good" in result.evidence
    assert result.metrics["exit_code"] == 0


def test_a_command_fails_on_another_exit_status_with_its_last_lines(run_one: RunOne) -> None:
    result = run_one(
        "command",
        "{argv: [sh, -c, 'for i in 1 2 3 4 5; do echo line $i; done; exit 3'], evidence_lines: 2}",
    )
    assert result.status is Status.FAIL
    assert "exit status 3" in result.summary
    assert result.evidence[0] == "exit status 3 (expected 0)"
    assert result.evidence[-2:] == ["> line 4", "> line 5"]


def test_expect_exit_takes_a_list(run_one: RunOne) -> None:
    assert (
        run_one("command", "{argv: [sh, -c, 'exit 3'], expect_exit: [0, 3]}").status is Status.PASS
    )


def test_output_patterns(run_one: RunOne) -> None:
    passing = run_one(
        "command",
        "{argv: [sh, -c, 'echo head is 9b1c'], contains: 'head is [0-9a-f]+', not_contains: ERROR}",
    )
    assert passing.status is Status.PASS
    failing = run_one(
        "command", "{argv: [sh, -c, 'echo ok; echo ERROR boom >&2'], not_contains: ERROR}"
    )
    assert failing.status is Status.FAIL
    assert "output line 2 matches forbidden 'ERROR'" in failing.summary


def test_no_shell_unless_asked(run_one: RunOne, tmp_path: Path) -> None:
    # Without a shell, metacharacters are plain arguments.
    result = run_one("command", "{argv: [echo, '$HOME && false']}")
    assert result.status is Status.PASS
    assert "> $HOME && false" in result.evidence
    shell = run_one("command", "{argv: 'echo one && echo two', shell: true}")
    assert shell.status is Status.PASS
    assert shell.evidence[-2:] == ["> one", "> two"]


def test_argv_string_without_shell_is_a_profile_error(
    write_profile: Callable[..., Path],
) -> None:
    from readycheck.errors import ProfileError

    path = write_profile("checks:\n  - id: it\n    type: command\n    with: {argv: 'ls -l'}\n")
    with pytest.raises(
        ProfileError, match=r"profile.yaml:4:11: checks\[it\].with: argv is a single string"
    ):
        load_profile(path, environ={})


def test_command_not_found_fails_with_a_clear_message(run_one: RunOne) -> None:
    result = run_one("command", "{argv: [readycheck-no-such-program]}")
    assert result.status is Status.FAIL
    assert result.summary == "command not found: readycheck-no-such-program"


def test_a_hanging_command_is_killed_at_its_timeout_with_its_output(run_one: RunOne) -> None:
    started = time.monotonic()
    result = run_one("command", "{argv: [sh, -c, 'echo started; sleep 30 & wait'], timeout: 300ms}")
    assert result.status is Status.FAIL
    assert "did not finish within 300ms" in result.summary
    assert "> started" in result.evidence
    assert time.monotonic() - started < 10  # killed, not waited for


def test_the_checks_own_timeout_also_ends_the_command(run_one: RunOne) -> None:
    result = run_one("command", "{argv: [sleep, '30']}", timeout="1s")
    assert result.status is Status.FAIL
    assert "did not finish within" in result.summary


def test_a_background_child_holding_the_output_does_not_hang_the_check(run_one: RunOne) -> None:
    result = run_one("command", "{argv: [sh, -c, 'sleep 30 & echo parent done']}")
    assert result.status is Status.PASS
    assert "> parent done" in result.evidence


def test_env_cwd_and_inherit(run_one: RunOne, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    result = run_one(
        "command",
        "{argv: [sh, -c, 'echo $GREETING; pwd; echo home=$HOME'], cwd: sub, env: {GREETING: hi}, inherit_env: false}",
    )
    assert result.status is Status.PASS
    assert result.evidence[1:] == ["> hi", f"> {tmp_path / 'sub'}", "> home="]
    missing = run_one("command", "{argv: [true], cwd: nowhere}")
    assert missing.status is Status.ERROR
    assert "does not exist" in missing.summary


def test_secret_env_values_are_masked_in_the_output(run_one: RunOne) -> None:
    result = run_one(
        "command",
        "{argv: [sh, -c, 'echo token=$API_TOKEN pass=$DB_PASS other=$OTHER; exit 1'], "
        "env: {API_TOKEN: tok-canary-1, DB_PASS: pw-canary-2, OTHER: plain-3}, secret_env: [DB_PASS]}",
    )
    assert result.status is Status.FAIL
    assert "> token=*** pass=*** other=plain-3" in result.evidence


def test_secret_arguments_reach_the_command_and_show_nowhere(
    run_one: RunOne, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("file-canary-5\n")
    result = run_one(
        "command",
        '{argv: [sh, -c, \'echo $@; test "$6" = env-canary-4 && test "$7" = file-canary-5;'
        " exit 1', sh, --api-key, key-canary-1, --password=pw-canary-2, -psh-canary-3,"
        " {env: ARGV_SECRET}, {file: token}, plain-6], secret_args: [-p]}",
        env={"ARGV_SECRET": "env-canary-4"},
    )
    assert result.status is Status.FAIL
    assert result.metrics["exit_code"] == 1  # both tests held: the real values were passed
    assert "> --api-key *** --password=*** -p*** *** *** plain-6" in result.evidence
    assert "<env ARGV_SECRET> <file token> plain-6: exit status 1" in result.summary
    assert "canary" not in "\n".join([result.summary, *result.evidence])


def test_a_secret_in_a_shell_command_line_is_masked_in_what_the_command_prints(
    run_one: RunOne,
) -> None:
    """The shell's separators end a word (``--password VALUE;``), and an environment
    assignment or a header named like a secret carries one too."""
    result = run_one(
        "command",
        '{argv: "echo PGPASSWORD=env-canary-1 psql --password pw-canary-2;'
        " printf '%s\\\\n' 'Authorization: Bearer hdr-canary-3'"
        ' && echo --token tok-canary-4|cat; exit 1", shell: true}',
    )
    assert result.status is Status.FAIL
    assert result.evidence[1:] == [
        "> PGPASSWORD=*** psql --password ***",
        "> Authorization: ***",
        "> --token ***",
    ]
    assert "canary" not in "\n".join([result.summary, *result.evidence])


def test_an_argument_that_assigns_a_secret_by_name_is_masked(run_one: RunOne) -> None:
    result = run_one(
        "command",
        "{argv: [env, DB_PASSWORD=env-canary-1, sh, -c, 'echo \"$DB_PASSWORD $1\"; exit 1',"
        " sh, 'X-Api-Key: hdr-canary-2', plain=value-3]}",
    )
    assert result.status is Status.FAIL
    assert "> *** X-Api-Key: ***" in result.evidence
    assert "canary" not in "\n".join([result.summary, *result.evidence])
    assert "plain=value-3" in result.summary


def test_an_argument_from_an_unset_source_fails_without_running(run_one: RunOne) -> None:
    result = run_one("command", "{argv: [touch, ran, {env: READYCHECK_TEST_UNSET}]}")
    assert result.status is Status.FAIL
    assert result.summary == (
        "touch ran <env READYCHECK_TEST_UNSET>: argument env READYCHECK_TEST_UNSET: "
        "environment variable READYCHECK_TEST_UNSET is not set"
    )


def test_secret_args_must_name_an_option_in_argv(write_profile: Callable[..., Path]) -> None:
    from readycheck.errors import ProfileError

    path = write_profile(
        "checks:\n  - id: it\n    type: command\n"
        "    with: {argv: [cli, --token-file, x], secret_args: [--signing-key]}\n"
    )
    with pytest.raises(
        ProfileError, match="secret_args names '--signing-key', which is not in argv"
    ):
        load_profile(path, environ={})


def test_huge_output_is_bounded(run_one: RunOne) -> None:
    result = run_one(
        "command",
        "{argv: [sh, -c, 'head -c 5000000 /dev/zero | tr \"\\\\0\" x; echo; echo end'], max_output: 64KB}",
    )
    assert result.status is Status.PASS
    assert result.metrics["output_bytes"] > 5_000_000
    assert any("only the last 64KB were kept" in line for line in result.evidence)
    assert result.evidence[-1] == "> end"


def test_terminal_control_sequences_are_stripped(run_one: RunOne) -> None:
    result = run_one("command", r"{argv: [printf, '\033[31mred\033[0m\n']}")
    assert "> red" in result.evidence


# -- file --------------------------------------------------------------------------------


def test_a_file_with_the_required_content(run_one: RunOne, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.12\nHEALTHCHECK CMD curl -f http://localhost/\n"
    )
    result = run_one(
        "file", "{path: Dockerfile, contains: '^HEALTHCHECK ', not_contains: 'DEBUG=1'}"
    )
    assert result.status is Status.PASS
    assert "matches '^HEALTHCHECK ' at line 2" in result.evidence


def test_a_file_missing_or_lacking_content_fails(run_one: RunOne, tmp_path: Path) -> None:
    assert run_one("file", "{path: uv.lock}").status is Status.FAIL
    (tmp_path / "Dockerfile").write_text("FROM python\nENV SECRET_KEY=abc123\n")
    result = run_one(
        "file", "{path: Dockerfile, contains: HEALTHCHECK, not_contains: 'SECRET_KEY='}"
    )
    assert result.status is Status.FAIL
    assert "does not match 'HEALTHCHECK'" in result.summary
    assert "line 2 matches forbidden 'SECRET_KEY='" in result.summary
    # The forbidden line's text is never shown: it may hold the very secret it forbids.
    assert not any("abc123" in line for line in [result.summary, *result.evidence])


def test_a_file_that_must_be_absent(run_one: RunOne, tmp_path: Path) -> None:
    assert run_one("file", "{path: .env, exists: false}").status is Status.PASS
    (tmp_path / ".env").write_text("X=1\n")
    assert run_one("file", "{path: .env, exists: false}").status is Status.FAIL


def test_size_limits_for_files_and_directories(run_one: RunOne, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "a.bin").write_bytes(b"x" * 600_000)
    (bundle / "b.bin").write_bytes(b"x" * 600_000)
    small = run_one("file", "{path: bundle, kind: directory, max_size: 2MB}")
    assert small.status is Status.PASS
    assert small.metrics["size_bytes"] == 1_200_000
    big = run_one("file", "{path: bundle, max_size: 1MB}")
    assert big.status is Status.FAIL
    assert "1.2 MB exceeds the limit of 1MB" in big.summary


def test_kind_and_special_files(run_one: RunOne, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    assert run_one("file", "{path: dir, kind: file}").status is Status.FAIL
    (tmp_path / "plain").write_text("x")
    assert run_one("file", "{path: plain, kind: directory}").status is Status.FAIL
    os.mkfifo(tmp_path / "fifo")
    result = run_one("file", "{path: fifo, contains: x}")
    assert result.status is Status.FAIL
    assert result.summary == "fifo is not a regular file or directory"


def test_invalid_regex_is_a_profile_error(write_profile: Callable[..., Path]) -> None:
    from readycheck.errors import ProfileError

    path = write_profile(
        "checks:\n  - id: it\n    type: file\n    with: {path: x, contains: '(unclosed'}\n"
    )
    with pytest.raises(
        ProfileError, match=r"checks\[it\].with.contains: invalid regular expression"
    ):
        load_profile(path, environ={})
