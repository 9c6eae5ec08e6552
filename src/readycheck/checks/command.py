"""Commands: run a program and judge its exit status and output."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, model_validator

from readycheck import children
from readycheck.checks.patterns import Argument, Regex, as_list, match_lines
from readycheck.checks.sources import SourceProblem, ValueSource, check_plain, read_value
from readycheck.params import BufferSize, CheckParams
from readycheck.redact import credential_forms, looks_secret
from readycheck.registry import check
from readycheck.results import Outcome, compared, held
from readycheck.units import Duration, Size

if TYPE_CHECKING:
    import asyncio

    from readycheck.context import Context

_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")
_KILL_GRACE_SECONDS = 1.0
# The name of an environment variable or a header (what `NAME=value` and `Name: value` start with).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


ExitStatus = Annotated[int, Field(ge=-64, le=255)]


class CommandParams(CheckParams):
    argv: list[Argument | ValueSource] | str = Field(
        description="The program and its arguments, as a list (no shell). A single string "
        "is a shell command line and needs `shell: true`. An argument may be read from a "
        "source when the check runs, and is then never shown: {env: NAME}, {file: PATH} or "
        "{dotenv: PATH, key: NAME}.",
    )
    secret_args: list[str] = Field(
        default_factory=list,
        description="Options whose value is never shown: the argument after one, or after "
        "its `=` (e.g. [--api-key, -p]; a one-letter option's attached value too, as in "
        "-pVALUE). Options named like *password*, *token*, *secret* or *key* are secret "
        "anyway, and so are the values of arguments such as PGPASSWORD=VALUE or "
        "'Authorization: Bearer VALUE'.",
    )
    shell: bool = Field(False, description="Run `argv` (a string) with /bin/sh -c.")
    cwd: str | None = Field(
        None, description="Working directory, relative to the profile's directory."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables to set for the command."
    )
    secret_env: list[str] = Field(
        default_factory=list,
        description="Names in `env` whose values are secrets (names like *_TOKEN, *_KEY or "
        "*PASSWORD* are secret anyway).",
    )
    inherit_env: bool = Field(True, description="Start from readycheck's own environment.")
    timeout: Duration | None = Field(
        None,
        description="Kill the command after this long and FAIL (default: the check's timeout).",
    )
    expect_exit: ExitStatus | list[ExitStatus] = Field(
        0, description="Exit status (or list) that passes; -N: killed by signal N."
    )
    contains: Regex | list[Regex] | None = Field(
        None, description="Regex(es) the output (stdout and stderr) must match."
    )
    not_contains: Regex | list[Regex] | None = Field(
        None, description="Regex(es) the output must not match."
    )
    evidence_lines: int = Field(
        10, ge=0, le=200, description="How many of the last output lines to show as evidence."
    )
    max_output: BufferSize = Field(
        Size("1MB"), description="Output kept in memory; earlier output is dropped."
    )

    @model_validator(mode="after")
    def _argv_matches_shell(self) -> CommandParams:
        if isinstance(self.argv, str) and not self.shell:
            raise ValueError(
                "argv is a single string: give a list such as [alembic, current], or set "
                "shell: true to run it with /bin/sh"
            )
        if isinstance(self.argv, list) and self.shell:
            raise ValueError("with shell: true, argv is one command line (a string), not a list")
        if isinstance(self.argv, list) and not self.argv:
            raise ValueError("argv is empty: name the program to run")
        if isinstance(self.argv, str) and not self.argv.strip():
            raise ValueError("argv is empty: give the command line to run")
        words = self._words()
        for option in self.secret_args:
            if not any(word and word.startswith(option) for word in words):
                raise ValueError(f"secret_args names {option!r}, which is not in argv")
        return self

    def secret_values(self) -> Iterator[str]:
        yield from super().secret_values()
        for name, value in self.env.items():
            if name in self.secret_env or looks_secret(name):
                yield value
        words = self._words()
        for word, following in zip(words, [*words[1:], None], strict=True):
            if word is None:
                continue
            if not word.startswith("-"):
                yield from _named_secret(word)
                continue
            name, equals, value = word.partition("=")
            if self._secret_option(name):
                if equals:
                    yield value
                elif following is not None:
                    yield following
            else:
                # -pVALUE: a one-letter option named in secret_args, its value attached.
                yield from (
                    word[2:]
                    for option in self.secret_args
                    if len(option) == 2 and word.startswith(option) and len(word) > 2
                )

    def _secret_option(self, name: str) -> bool:
        return name in self.secret_args or looks_secret(name.lstrip("-"))

    def _words(self) -> list[str | None]:
        """The arguments as text (a shell command line split as the shell would); None
        for one read from a source."""
        if isinstance(self.argv, list):
            return [word if isinstance(word, str) else None for word in self.argv]
        # The shell's operators (; && | ...) end a word as they do for the shell: a value
        # before `;` is the secret itself, not the secret and the `;`.
        lexer = shlex.shlex(self.argv, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            return list[str | None](lexer)
        except ValueError:  # unbalanced quotes: the shell will say so when it runs
            return list[str | None](self.argv.split())

    @property
    def display(self) -> str:
        if isinstance(self.argv, str):
            return self.argv
        return " ".join(
            shlex.quote(word) if isinstance(word, str) else f"<{word.label}>" for word in self.argv
        )


def _named_secret(word: str) -> Iterator[str]:
    """The secret an argument carries by its name: ``PGPASSWORD=…`` (an environment
    assignment, for `env` or a shell line) or ``Authorization: Bearer …`` (a header, for
    `curl -H`), the name looking like a secret's."""
    for separator in ("=", ":"):
        name, found, value = word.partition(separator)
        if found and _NAME.fullmatch(name) and looks_secret(name):
            yield from credential_forms(value.strip())
            return


@check("command", params=CommandParams, category="system")
async def command(p: CommandParams, ctx: Context) -> Outcome:
    """Run a command; pass on the expected exit status (and output patterns)."""
    import asyncio  # imported when a command runs: `validate` does not need an event loop

    if isinstance(p.argv, str):
        argv = ["/bin/sh", "-c", p.argv]
    else:
        argv = []
        for word in p.argv:
            if isinstance(word, str):
                argv.append(word)
                continue
            try:
                value = await read_value(word, ctx)  # registered with the redactor
                check_plain(value, word.label)
            except SourceProblem as problem:
                summary = f"{p.display}: argument {word.label}: {problem.message}"
                if problem.status == "ERROR":
                    return Outcome.errored(summary)
                return Outcome.failed(summary)
            argv.append(value)
    cwd = ctx.resolve(p.cwd) if p.cwd else ctx.base_dir
    if not cwd.is_dir():
        return Outcome.errored(f"working directory {cwd} does not exist")
    env = {**os.environ, **p.env} if p.inherit_env else dict(p.env)
    # Leave a little of the check's time to kill the command and report what it printed.
    limit = ctx.remaining() - 0.5
    if p.timeout is not None:
        limit = min(limit, p.timeout.seconds)
    try:
        ran = await run_program(argv, cwd=cwd, env=env, limit=limit, max_output=p.max_output)
    except ProgramNotStarted as failure:
        return failure.outcome

    text = ran.output
    tail = [line for line in text.splitlines() if line.strip()][-p.evidence_lines :]
    shown = [f"> {line}" for line in tail] if p.evidence_lines else []
    metrics: dict[str, float] = {"output_bytes": ran.total_bytes, "elapsed_ms": ran.elapsed_ms}
    truncated = ran.truncation_notes
    if ran.returncode is None:
        return Outcome.failed(
            f"{p.display} did not finish within {Duration(round(ran.limit, 3))}",
            evidence=[*truncated, *shown],
            metrics=metrics,
            remediation="Find out why the command hangs, or raise its timeout.",
        )

    code = ran.returncode
    metrics["exit_code"] = code
    expected = as_list_int(p.expect_exit)
    status_text = describe_exit(code)
    evidence = [
        compared(code in expected, f"{status_text} (expected {' or '.join(map(str, expected))})"),
        *truncated,
    ]
    problems: list[str] = []
    if code not in expected:
        problems.append(status_text)
    lines = await asyncio.to_thread(
        match_lines, text, [*as_list(p.contains), *as_list(p.not_contains)]
    )
    for pattern in as_list(p.contains):
        line = lines[pattern]
        if line is None:
            problems.append(f"output does not match '{pattern}'")
        else:
            evidence.append(held(f"output matches '{pattern}' (line {line})"))
    for pattern in as_list(p.not_contains):
        line = lines[pattern]
        if line is not None:
            problems.append(f"output line {line} matches forbidden '{pattern}'")
    evidence.extend(shown)
    if problems:
        return Outcome.failed(
            f"{p.display}: {'; '.join(problems)}", evidence=evidence, metrics=metrics
        )
    return Outcome.passed(f"{p.display}: {status_text}", evidence=evidence, metrics=metrics)


class ProgramNotStarted(Exception):
    """The program could not be started; ``outcome`` says why."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.summary)
        self.outcome = outcome


@dataclass(frozen=True)
class ProgramRun:
    """How a program ended and what it printed (stdout and stderr together)."""

    returncode: int | None
    """Its exit status (negative: killed by that signal); None when it ran out of time."""
    output: str
    """The last ``max_output`` bytes it printed, decoded, control characters removed."""
    total_bytes: int
    max_output: Size
    limit: float
    """The time it was given, in seconds."""
    elapsed_ms: float

    @property
    def truncation_notes(self) -> list[str]:
        if self.total_bytes <= self.max_output.bytes:
            return []
        return [f"output was {self.total_bytes} bytes; only the last {self.max_output} were kept"]


async def run_program(
    argv: list[str], *, cwd: Path, env: Mapping[str, str], limit: float, max_output: Size
) -> ProgramRun:
    """Run ``argv`` (no shell) in its own process group, at most ``limit`` seconds (then
    it and its children are ended), keeping the end of its output; raise
    :class:`ProgramNotStarted` when it cannot be started. Nothing it started outlives it."""
    import asyncio  # imported when a command runs: `validate` does not need an event loop

    limit = max(0.1, limit)
    started = time.monotonic()
    # The output goes to a pipe of our own rather than asyncio's: asyncio's process
    # transport waits for its pipes to close before it reports the exit, and a child the
    # command left in the background can hold them open for ever.
    read_fd, write_fd = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            start_new_session=True,  # its own process group, so a timeout kills its children
        )
    except FileNotFoundError:
        os.close(read_fd)
        raise ProgramNotStarted(
            Outcome.failed(
                f"command not found: {argv[0]}",
                remediation=f"Install {argv[0]} or fix the path in argv.",
            )
        ) from None
    except PermissionError:
        os.close(read_fd)
        raise ProgramNotStarted(
            Outcome.failed(f"{argv[0]} is not executable (permission denied)")
        ) from None
    except OSError as exc:
        os.close(read_fd)
        raise ProgramNotStarted(
            Outcome.failed(f"{argv[0]} could not be started: {exc.strerror or exc}")
        ) from None
    finally:
        os.close(write_fd)
    children.started(process.pid)

    output = _Tail(max_output.bytes)
    stream = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(read_fd, "rb", buffering=0)
    )
    reader = asyncio.create_task(output.read_from(stream))
    timed_out = False
    try:
        try:
            await asyncio.wait_for(process.wait(), timeout=limit)
        except TimeoutError:
            timed_out = True
            await _terminate(process)
        try:
            await asyncio.wait_for(asyncio.shield(reader), timeout=_KILL_GRACE_SECONDS)
        except TimeoutError:
            # The command exited but a child it left in the background still holds the
            # output open: end the whole group rather than wait for it.
            children.end(process.pid)
    finally:
        # However the command ended (exited, timed out, cancelled by a stop or a signal),
        # nothing it started is left running: not even a child in the background that
        # let go of the output.
        children.end(process.pid)
        reader.cancel()
        transport.close()
        if process.returncode is None:
            # Reap it before the loop closes, or asyncio reports the exit to a closed loop.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(process.wait()), _KILL_GRACE_SECONDS)
    return ProgramRun(
        returncode=None if timed_out else process.returncode,
        output=output.text(),
        total_bytes=output.total,
        max_output=max_output,
        limit=limit,
        elapsed_ms=round((time.monotonic() - started) * 1000.0, 1),
    )


def as_list_int(value: int | list[int]) -> list[int]:
    return [value] if isinstance(value, int) else list(value)


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


class _Tail:
    """The last ``limit`` bytes of a stream, and how many bytes it carried in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.total = 0

    async def read_from(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.total += len(chunk)
            self.buffer += chunk
            if len(self.buffer) > self.limit:
                del self.buffer[: len(self.buffer) - self.limit]

    def text(self) -> str:
        decoded = self.buffer.decode("utf-8", errors="replace").replace("\r\n", "\n")
        return _CONTROL.sub("", decoded)


async def _terminate(process: asyncio.subprocess.Process) -> None:
    import asyncio

    children.signal_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout=_KILL_GRACE_SECONDS)
    except TimeoutError:
        children.end(process.pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=_KILL_GRACE_SECONDS)
