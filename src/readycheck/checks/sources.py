"""Where a secret or a setting comes from: the environment, a .env file, a mounted file.

A value is read when its check runs, never when the profile loads (a secret mounted at
deploy time is not there on the machine that validates the profile), and handed to the
run's redactor the moment it is read, before anything could show it. Values of the
process environment are the exception: they are the same at load and at run time, so
the parameter models give them to the redactor at load time already, and a check that
prints them before this one runs still shows ``***``.

``.env`` files are parsed the way python-dotenv's ``dotenv_values`` parses them (its
grammar and its ``${VAR}`` / ``${VAR:-default}`` expansion), and never exported. The
parser is written here rather than taken from python-dotenv: it reports the lines it
cannot parse by number (python-dotenv logs and skips them), a missing file is an error
rather than an empty mapping, and readycheck gains no dependency.

Problems are :class:`SourceProblem`\\ s whose messages never quote a value.
"""

from __future__ import annotations

import codecs
import functools
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from readycheck.params import INPUT_FILE, CheckParams, Secret

if TYPE_CHECKING:
    from readycheck.context import Context

_UNDECODED = re.compile("[\udc80-\udcff]")
MAX_FILE_BYTES = 1_000_000
"""A secret or a .env file larger than this is not one (a log, a disk image): refused."""


class SourceProblem(Exception):
    """A value could not be read. ``status`` is FAIL when the deployment is not ready
    (unset, missing, empty) and ERROR when readycheck could not look (permissions)."""

    def __init__(self, message: str, status: Literal["FAIL", "ERROR"] = "FAIL") -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ValueSource(CheckParams):
    """One value: exactly one of `env`, `dotenv` (with `key`), `file` or `value`."""

    env: str | None = Field(None, description="Read the process environment variable NAME.")
    dotenv: Annotated[str | None, INPUT_FILE] = Field(
        None,
        description="Read `key` from this .env file (relative to the profile), parsed as "
        "python-dotenv parses it and never exported.",
    )
    key: str | None = Field(None, description="The variable to read from the `dotenv` file.")
    file: Annotated[str | None, INPUT_FILE] = Field(
        None,
        description="Read a mounted secret file (e.g. /run/secrets/jwt_key); a trailing "
        "newline is stripped.",
    )
    value: Secret | None = Field(
        None,
        description='The value itself, usually "${env:NAME}" (an unset variable is then a '
        "profile error).",
    )
    name: str | None = Field(
        None,
        description="What evidence calls this value (default: the variable, key or file name).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ValueSource:
        given = [k for k in ("env", "dotenv", "file", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of env: NAME, dotenv: PATH (with key: NAME), file: PATH "
                f"or value: ...; got {', '.join(given) if given else 'none'}"
            )
        if self.dotenv is not None and not self.key:
            raise ValueError("dotenv: PATH needs key: NAME, the variable to read from it")
        if self.key is not None and self.dotenv is None:
            raise ValueError("key: is only used with dotenv: PATH")
        for label, text in (("env", self.env), ("dotenv", self.dotenv), ("file", self.file)):
            if text is not None and not text.strip():
                raise ValueError(f"{label}: is empty")
        return self

    def secret_values(self) -> Iterator[str]:
        yield from super().secret_values()
        if self.env is not None:
            # The process environment is the same now as when the check runs.
            value = os.environ.get(self.env)
            if value:
                yield value

    def runtime_secrets(self, base_dir: Path) -> Iterator[str]:
        base = Path(base_dir)
        try:
            if self.dotenv is not None and self.key is not None:
                path = Path(self.dotenv)
                found = read_dotenv(path if path.is_absolute() else base / path, self.dotenv)
                value = found.values.get(self.key)
            elif self.file is not None:
                path = Path(self.file)
                raw = read_file_bytes(path if path.is_absolute() else base / path, self.file)
                value = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
            else:
                return
        except SourceProblem:
            return
        if value:
            lines = value.splitlines()
            yield value
            yield from (line for line in lines if len(line) >= 8 and len(lines) > 1)

    @property
    def label(self) -> str:
        """How evidence names the source: ``env SECRET_KEY``, ``file /run/secrets/jwt``."""
        if self.name:
            return self.name
        if self.env is not None:
            return f"env {self.env}"
        if self.dotenv is not None:
            return f"{self.key} in {self.dotenv}"
        if self.file is not None:
            return f"file {self.file}"
        return "value"

    @property
    def own_name(self) -> str | None:
        """The name the value is stored under, for "a value equal to its own name"."""
        if self.env is not None:
            return self.env
        if self.key is not None:
            return self.key
        if self.file is not None:
            return Path(self.file).name
        return self.name


class VariablesSource(CheckParams):
    """A set of variables: a .env file instead of the process environment."""

    dotenv: Annotated[str, INPUT_FILE] = Field(
        description="A .env file (relative to the profile), parsed as python-dotenv parses "
        "it and never exported."
    )


async def read_value(source: ValueSource, ctx: Context) -> str:
    """The source's value, registered with the redactor; raises SourceProblem."""
    import asyncio

    if source.value is not None:
        value = source.value.reveal()  # registered by the profile loader
    elif source.env is not None:
        found = os.environ.get(source.env)
        if found is None:
            raise SourceProblem(f"environment variable {source.env} is not set")
        value = found
    elif source.dotenv is not None:
        assert source.key is not None
        variables = await asyncio.to_thread(read_dotenv, ctx.resolve(source.dotenv), source.dotenv)
        if source.key not in variables.values:
            raise SourceProblem(
                f"{source.dotenv} has no variable {source.key}" + variables.unparsed_note()
            )
        found = variables.values[source.key]
        if found is None:
            raise SourceProblem(f"{source.key} is declared without a value in {source.dotenv}")
        value = found
    else:
        assert source.file is not None
        raw = await asyncio.to_thread(read_file_bytes, ctx.resolve(source.file), source.file)
        value = decode_utf8(raw, source.file).rstrip("\r\n")
    # A value with a line break is refused, but one of its lines is likely the secret.
    lines = value.splitlines()
    ctx.redactor.add(value, *(line for line in lines if len(line) >= 8 and len(lines) > 1))
    return value


def check_plain(value: str, label: str) -> None:
    """Refuse values no application can use as they are: empty, or with a NUL or a
    line break (a copy-paste slip, or a file holding more than the secret)."""
    if not value:
        raise SourceProblem(f"{label} is empty")
    if not is_utf8(value):
        raise SourceProblem(f"{label} is not UTF-8 text")
    if "\x00" in value:
        raise SourceProblem(f"{label} contains a NUL character")
    if "\n" in value or "\r" in value:
        raise SourceProblem(f"{label} contains a line break")


def is_utf8(value: str) -> bool:
    """False for environment values that were not UTF-8: os.environ keeps their bytes as
    surrogate escapes."""
    return _UNDECODED.search(value) is None


def read_file_bytes(path: Path, shown: str) -> bytes:
    """A regular file's bytes, with messages that name the file and never its content."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SourceProblem(f"{shown} does not exist") from None
    except NotADirectoryError:
        raise SourceProblem(f"{shown} does not exist (a parent is not a directory)") from None
    except PermissionError:
        raise SourceProblem(f"{shown} cannot be reached (permission denied)", "ERROR") from None
    except OSError as exc:
        raise SourceProblem(f"{shown} cannot be read: {exc.strerror or 'error'}", "ERROR") from None
    if stat.S_ISDIR(info.st_mode):
        raise SourceProblem(f"{shown} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        # A FIFO or a device would block the read, or never end.
        raise SourceProblem(f"{shown} is not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise SourceProblem(f"{shown} is {info.st_size} bytes: too large to hold a secret")
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except PermissionError:
        raise SourceProblem(f"{shown} cannot be read (permission denied)", "ERROR") from None
    except OSError as exc:
        raise SourceProblem(f"{shown} cannot be read: {exc.strerror or 'error'}", "ERROR") from None


def decode_utf8(raw: bytes, shown: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The codec's own message quotes the offending byte: a byte of the secret.
        raise SourceProblem(
            f"{shown} is not UTF-8 text (undecodable byte at offset {exc.start})"
        ) from None


# -- .env files ------------------------------------------------------------------------------


@dataclass
class DotenvFile:
    """A parsed .env file: its variables in order (None: a name with no ``=``), and the
    lines of statements that could not be parsed (python-dotenv skips them too)."""

    values: dict[str, str | None] = field(default_factory=dict)
    unparsed_lines: list[int] = field(default_factory=list)

    def unparsed_text(self) -> str:
        shown = ", ".join(map(str, self.unparsed_lines[:10]))
        return shown + (", ..." if len(self.unparsed_lines) > 10 else "")

    def unparsed_note(self) -> str:
        return f" (lines it could not parse: {self.unparsed_text()})" if self.unparsed_lines else ""


def read_dotenv(path: Path, shown: str, environ: Mapping[str, str] | None = None) -> DotenvFile:
    text = decode_utf8(read_file_bytes(path, shown), shown)
    return parse_dotenv(text, os.environ if environ is None else environ)


# The grammar of python-dotenv's parser.py (release 1.2), expression for expression.
_MULTILINE_WHITESPACE = re.compile(r"\s*", re.MULTILINE)
_WHITESPACE = re.compile(r"[^\S\r\n]*")
_EXPORT = re.compile(r"(?:export[^\S\r\n]+)?")
_SINGLE_QUOTED_KEY = re.compile(r"'([^']+)'")
_UNQUOTED_KEY = re.compile(r"([^=\#\s]+)")
_EQUAL_SIGN = re.compile(r"(=[^\S\r\n]*)")
_SINGLE_QUOTED_VALUE = re.compile(r"'((?:\\.|[^'\\])*)'", re.DOTALL)
_DOUBLE_QUOTED_VALUE = re.compile(r'"((?:\\.|[^"\\])*)"', re.DOTALL)
_UNQUOTED_VALUE = re.compile(r"([^\r\n]*)")
_COMMENT = re.compile(r"(?:[^\S\r\n]*#[^\r\n]*)?")
_END_OF_LINE = re.compile(r"[^\S\r\n]*(?:\r\n|\n|\r|$)")
_REST_OF_LINE = re.compile(r"[^\r\n]*(?:\r|\n|\r\n)?")
_DOUBLE_QUOTE_ESCAPES = re.compile(r"\\[\\'\"abfnrtv]")
_SINGLE_QUOTE_ESCAPES = re.compile(r"\\[\\']")
_NEWLINES = re.compile(r"\r\n|\n|\r")
_POSIX_VARIABLE = re.compile(r"\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}")


class _Unparsable(Exception):
    pass


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text.removeprefix("\ufeff")
        self.position = 0

    def has_next(self) -> bool:
        return self.position < len(self.text)

    def peek(self, count: int) -> str:
        return self.text[self.position : self.position + count]

    def read(self, pattern: re.Pattern[str]) -> tuple[str | None, ...]:
        match = pattern.match(self.text, self.position)
        if match is None:
            raise _Unparsable
        self.position = match.end()
        return match.groups()

    def line(self) -> int:
        return len(_NEWLINES.findall(self.text, 0, self.position)) + 1


def parse_dotenv(text: str, environ: Mapping[str, str]) -> DotenvFile:
    """Variables of a .env text, as ``dotenv_values(interpolate=True)`` returns them:
    later definitions win, and ``${NAME}`` expands from the file's earlier variables,
    then from ``environ`` (``${NAME:-default}`` when NAME is in neither)."""
    reader = _Reader(text)
    parsed = DotenvFile()
    raw: list[tuple[str, str | None]] = []
    while reader.has_next():
        reader.read(_MULTILINE_WHITESPACE)
        if not reader.has_next():
            break
        line = reader.line()
        try:
            binding = _binding(reader)
        except _Unparsable:
            # Like python-dotenv: skip the rest of the line where parsing stopped.
            reader.read(_REST_OF_LINE)
            parsed.unparsed_lines.append(line)
            continue
        if binding is not None:
            raw.append(binding)
    for name, value in raw:
        if value is None:
            parsed.values[name] = None
            continue
        known: dict[str, str | None] = {**environ, **parsed.values}
        parsed.values[name] = _POSIX_VARIABLE.sub(functools.partial(_expand, known=known), value)
    return parsed


def _binding(reader: _Reader) -> tuple[str, str | None] | None:
    reader.read(_EXPORT)
    if reader.peek(1) == "#":
        reader.read(_REST_OF_LINE)
        return None
    if reader.peek(1) == "'":
        (key,) = reader.read(_SINGLE_QUOTED_KEY)
    else:
        (key,) = reader.read(_UNQUOTED_KEY)
    reader.read(_WHITESPACE)
    value: str | None = None
    if reader.peek(1) == "=":
        (equal_sign,) = reader.read(_EQUAL_SIGN)
        # `KEY= # comment` is empty; `KEY=#value` (no space) is "#value".
        value = "" if len(equal_sign or "") > 1 and reader.peek(1) == "#" else _value(reader)
    reader.read(_COMMENT)
    reader.read(_END_OF_LINE)
    assert key is not None
    return key, value


def _value(reader: _Reader) -> str:
    char = reader.peek(1)
    if char == "'":
        (value,) = reader.read(_SINGLE_QUOTED_VALUE)
        return _decode_escapes(_SINGLE_QUOTE_ESCAPES, value or "")
    if char == '"':
        (value,) = reader.read(_DOUBLE_QUOTED_VALUE)
        return _decode_escapes(_DOUBLE_QUOTE_ESCAPES, value or "")
    if char in ("", "\n", "\r"):
        return ""
    (part,) = reader.read(_UNQUOTED_VALUE)
    return re.sub(r"\s+#.*", "", part or "").rstrip()


def _decode_escapes(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(lambda m: codecs.decode(m.group(0), "unicode-escape"), text)


def _expand(match: re.Match[str], known: Mapping[str, str | None]) -> str:
    name, default = match.group("name"), match.group("default")
    value = known.get(name, default if default is not None else "")
    return value if value is not None else ""
