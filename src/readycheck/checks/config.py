"""Configuration: the environment (or a .env file) holds what production needs.

DEBUG off, ENVIRONMENT=production, CORS not ``*``, no SQLite DATABASE_URL, SENTRY_DSN
set, ...: each a rule on one variable, or the built-in ``production`` preset.

Values are compared as strings. An expected boolean (``false``, or the words true/false,
yes/no, on/off) matches any spelling of it, case-insensitively: ``false``, ``0``, ``no``,
``off`` on one side and ``true``, ``1``, ``yes``, ``on`` on the other.

A value is secret when its rule says so, when its name looks secret (``*_KEY``,
``*_TOKEN``, ``*SECRET*``, ``*PASSWORD*``, ``*_DSN``) or when it holds credentials (a URL
with a user and password, a libpq ``password=``). Evidence then shows its length, never
the value, nor the expected values it was compared with; and the value goes to the
redactor. Values shorter than four characters are not given to the redactor: a name like
PASSWORD_MIN_LENGTH looks secret, and masking every "8" in the report would hide
everything else while protecting nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from readycheck.checks.patterns import Regex, matches
from readycheck.checks.sources import SourceProblem, VariablesSource, is_utf8, read_dotenv
from readycheck.params import CheckParams, SecretDsn
from readycheck.redact import looks_secret, url_has_credentials
from readycheck.registry import check
from readycheck.results import Outcome, compared

if TYPE_CHECKING:
    from readycheck.context import Context

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "on", "off"})
_MIN_REGISTERED = 4
_SHOWN_CHARS = 60
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONNINFO_PASSWORD = re.compile(r"(?i)\bpassword\s*=")


def _number_as_text(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Expected = Annotated[bool | str, BeforeValidator(_number_as_text)]
"""An expected value: a string (YAML numbers as written) or a boolean."""


class EnvRule(CheckParams):
    """One rule about one variable. With only `name`, the variable must be set."""

    name: str = Field(description="The variable's name.", min_length=1)
    required: bool = Field(
        True,
        description="It must be set and not empty; with false, an unset or empty variable "
        "passes and the other conditions judge it only when it has a value.",
    )
    equals: Expected | None = Field(
        None,
        description="The value it must have. An expected boolean (false, or true/false, yes/no, "
        "on/off) matches any spelling of it, 0/1 included, case-insensitively.",
    )
    in_: list[Expected] | None = Field(
        None, alias="in", description="The values it may have (one of them)."
    )
    not_in: list[Expected] | None = Field(None, description="Values it must not have.")
    matches: Regex | None = Field(None, description="A regex its value must match (search).")
    not_matches: Regex | None = Field(None, description="A regex its value must not match.")
    absent: bool = Field(False, description="It must not be set at all.")
    secret: bool = Field(
        False,
        description="Never show its value, though its name does not look secret (*_KEY, "
        "*_TOKEN, *SECRET*, *PASSWORD*, *_DSN and URLs with credentials never are).",
    )

    @model_validator(mode="after")
    def _absent_alone(self) -> EnvRule:
        if "=" in self.name:
            raise ValueError(f"name {self.name!r} contains '=': give the name only")
        conditions = [self.equals, self.in_, self.not_in, self.matches, self.not_matches]
        if self.absent and any(c is not None for c in conditions):
            raise ValueError("absent: true cannot be combined with conditions on the value")
        if self.absent and self.required and "required" in self.model_fields_set:
            raise ValueError("absent: true and required: true contradict each other")
        return self

    def is_secret(self, value: str | None = None) -> bool:
        return (
            self.secret or looks_secret(self.name) or (value is not None and _credentialed(value))
        )


_ANY_ORIGIN = r"(^|[\s,;\[\]\"'])\*($|[\s,;\[\]\"'])"
PRODUCTION_RULES: tuple[EnvRule, ...] = (
    EnvRule(name="DEBUG", required=False, equals=False),
    EnvRule(name="DJANGO_DEBUG", required=False, equals=False),
    EnvRule(name="FLASK_DEBUG", required=False, equals=False),
    EnvRule(name="ENVIRONMENT", equals="production"),
    EnvRule(name="CORS_ALLOWED_ORIGINS", required=False, not_matches=_ANY_ORIGIN),
    EnvRule(name="CORS_ORIGINS", required=False, not_matches=_ANY_ORIGIN),
    EnvRule(name="ALLOWED_ORIGINS", required=False, not_matches=_ANY_ORIGIN),
    EnvRule(name="BACKEND_CORS_ORIGINS", required=False, not_matches=_ANY_ORIGIN),
    EnvRule(name="DATABASE_URL", required=False, not_matches=r"(?i)^\s*sqlite"),
)
PRESETS: dict[str, tuple[EnvRule, ...]] = {"production": PRODUCTION_RULES}


class ConfigEnvParams(CheckParams):
    source: VariablesSource | None = Field(
        None, description="Where the variables are: dotenv: PATH; default: the process environment."
    )
    rules: list[EnvRule] = Field(
        default_factory=list,
        description="Rules: {name, required, equals, in, not_in, matches, not_matches, absent, "
        "secret}.",
    )
    preset: Literal["production"] | None = Field(
        None,
        description="Built-in rules: production = DEBUG, DJANGO_DEBUG, FLASK_DEBUG off if set; "
        "ENVIRONMENT=production; CORS_ALLOWED_ORIGINS, CORS_ORIGINS, ALLOWED_ORIGINS, "
        "BACKEND_CORS_ORIGINS not *; DATABASE_URL not sqlite. A rule in `rules` for the same "
        "name replaces the preset's.",
    )

    @model_validator(mode="after")
    def _something_to_check(self) -> ConfigEnvParams:
        if not self.rules and self.preset is None:
            raise ValueError("give rules, a preset, or both")
        names = [rule.name for rule in self.rules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"more than one rule for {', '.join(repeated)}: merge them")
        return self

    def all_rules(self) -> list[EnvRule]:
        explicit = {rule.name for rule in self.rules}
        preset = PRESETS[self.preset] if self.preset else ()
        return [rule for rule in preset if rule.name not in explicit] + list(self.rules)

    def secret_values(self) -> Iterator[str]:
        yield from super().secret_values()
        if self.source is None:
            # The process environment is the same now as when the check runs: mask its
            # secret values from the start, before any other check could print them.
            for rule in self.all_rules():
                value = os.environ.get(rule.name)
                if value and rule.is_secret(value):
                    yield from registered_forms(value)

    def runtime_secrets(self, base_dir: Path) -> Iterator[str]:
        if self.source is None:
            return
        path = Path(self.source.dotenv)
        try:
            found = read_dotenv(path if path.is_absolute() else base_dir / path, self.source.dotenv)
        except SourceProblem:
            return
        for name, value in found.values.items():
            if value and (looks_secret(name) or url_has_credentials(value)):
                yield from registered_forms(value)


@check("config.env", params=ConfigEnvParams, category="config")
async def env(p: ConfigEnvParams, ctx: Context) -> Outcome:
    """Check environment variables (or a .env file) against rules such as DEBUG off."""
    import asyncio

    where = "the environment"
    notes: list[str] = []
    if p.source is None:
        variables: Mapping[str, str | None] = dict(os.environ)
    else:
        where = p.source.dotenv
        try:
            parsed = await asyncio.to_thread(read_dotenv, ctx.resolve(where), where)
        except SourceProblem as problem:
            outcome = Outcome.errored if problem.status == "ERROR" else Outcome.failed
            return outcome(problem.message, evidence=[f"source: {where}"])
        variables = parsed.values
        if parsed.unparsed_lines:
            notes.append(f"{where}: lines {parsed.unparsed_text()} could not be parsed (skipped)")

    rules = p.all_rules()
    evidence: list[str] = []
    broken: list[str] = []
    for rule in rules:
        value = variables.get(rule.name)
        if value is not None and rule.is_secret(value):
            ctx.redactor.add(*registered_forms(value))
        holds, line = judge(rule, value)
        evidence.append(compared(holds, line))
        if not holds:
            broken.append(line)
    evidence.extend(notes)
    if broken:
        return Outcome.failed(
            f"{len(broken)} of {len(rules)} rules broken in {where}: {'; '.join(broken[:3])}"
            + (f"; and {len(broken) - 3} more" if len(broken) > 3 else ""),
            evidence=evidence,
            remediation="Set the variables as the rules require in the deployment's "
            f"configuration ({where}).",
        )
    if notes:
        return Outcome.warned(
            f"all {len(rules)} rules hold in {where}, but some lines could not be parsed",
            evidence=evidence,
        )
    return Outcome.passed(f"all {len(rules)} rules hold in {where}", evidence=evidence)


def judge(rule: EnvRule, value: str | None) -> tuple[bool, str]:
    """Whether the rule holds for the value (None: unset), and the evidence line."""
    name = rule.name
    if rule.absent:
        if value is None:
            return True, f"{name}: not set, as required"
        return False, f"{name}: set, but must not be"
    if value is None or value == "":
        state = "not set" if value is None else "set but empty"
        if rule.required:
            return False, f"{name}: {state} (required)"
        return True, f"{name}: {state} (optional)"
    if not is_utf8(value):
        return False, f"{name}: not UTF-8 text"
    secret = rule.is_secret(value)
    shown = f"{name}=<secret, {len(value)} characters>" if secret else f"{name}={_shown(value)}"
    if "\x00" in value:
        return False, f"{shown}: contains a NUL character"
    passed: list[str] = []
    failed: list[str] = []

    def record(ok: bool, if_ok: str, if_not: str) -> None:
        (passed if ok else failed).append(if_ok if ok else if_not)

    if rule.equals is not None:
        expected = _expected_text(rule.equals)
        record(
            _same(value, rule.equals),
            f"equals {expected}" if not secret else "equals the expected value",
            f"expected {expected}" if not secret else "differs from the expected value",
        )
    if rule.in_ is not None:
        choices = _choices(rule.in_, secret)
        record(
            any(_same(value, item) for item in rule.in_),
            f"is one of {choices}",
            f"is not one of {choices}",
        )
    if rule.not_in is not None:
        choices = _choices(rule.not_in, secret)
        record(
            not any(_same(value, item) for item in rule.not_in),
            f"is none of {choices}",
            f"is one of {choices}, which are forbidden",
        )
    if rule.matches is not None:
        record(
            matches(rule.matches, value),
            f"matches '{rule.matches}'",
            f"does not match '{rule.matches}'",
        )
    if rule.not_matches is not None:
        record(
            not matches(rule.not_matches, value),
            f"does not match '{rule.not_matches}'",
            f"matches the forbidden '{rule.not_matches}'",
        )
    if failed:
        return False, f"{shown}: {'; '.join(failed)}"
    return True, f"{shown}: {', '.join(passed) if passed else 'set'}"


def registered_forms(value: str) -> list[str]:
    """What the redactor must mask for a secret value: the value, and the password inside
    it when it is a connection string, even a malformed one."""
    forms = [value, *SecretDsn(value).redaction_values()]
    if "://" in value:
        # Where a password sits even when the URL does not parse (an unencoded @ / # ?):
        # between the first ':' of the userinfo and the last '@'.
        userinfo = value.split("://", 1)[1].rpartition("@")[0]
        if ":" in userinfo:
            forms.append(userinfo.split(":", 1)[1])
    return [form for form in dict.fromkeys(forms) if len(form) >= _MIN_REGISTERED]


def _credentialed(value: str) -> bool:
    after_scheme = value.split("://", 1)[1] if "://" in value else ""
    return (
        url_has_credentials(value)
        or "@" in after_scheme
        or _CONNINFO_PASSWORD.search(value) is not None
    )


def _boolean(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def _same(value: str, expected: bool | str) -> bool:
    if isinstance(expected, bool) or expected.strip().lower() in _BOOLEAN_WORDS:
        wanted = expected if isinstance(expected, bool) else _boolean(expected)
        return _boolean(value) is wanted
    return value == expected


def _expected_text(expected: bool | str) -> str:
    if isinstance(expected, bool):
        return "true" if expected else "false"
    return _shown(expected)


def _choices(items: list[bool | str], secret: bool) -> str:
    if secret:
        return f"the {len(items)} listed values"
    return "[" + ", ".join(_expected_text(item) for item in items) + "]"


def _shown(value: str) -> str:
    """A value on one line: control characters escaped, long values cut."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], value)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return f"'{text}'"
