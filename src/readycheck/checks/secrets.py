"""Secrets: strong enough, not a placeholder, and not one key reused for two purposes.

Evidence about a secret shows where it came from, its length, its estimated strength and
a fingerprint, never a character of it. The fingerprint is the first 8 hex digits of
HMAC-SHA256 under a random key drawn once per run (per process). It tells values apart
within a run (two sources with one value show one fingerprint) and says nothing across
runs, on purpose: with a fixed key, which would have to ship in readycheck's source, a
report shared as a CI artifact would let anyone test guesses ("changeme", a leaked
old key) against the fingerprint offline. The price is that two reports cannot show
whether a key was rotated between them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from readycheck.checks.patterns import Regex, as_list, matches
from readycheck.checks.sources import SourceProblem, ValueSource, check_plain, read_value
from readycheck.params import CheckParams
from readycheck.registry import check
from readycheck.results import Outcome, compared

if TYPE_CHECKING:
    from readycheck.context import Context

_RUN_KEY = os.urandom(32)

PresetName = Literal["jwt_hs256", "jwt_hs384", "jwt_hs512", "django", "flask", "fernet"]


@dataclass(frozen=True)
class Preset:
    title: str
    min_length: int
    min_bits: float
    remediation: str
    exact_length: int | None = None


def _urlsafe_token(nbytes: int) -> str:
    return f'python -c "import secrets; print(secrets.token_urlsafe({nbytes}))"'


PRESETS: dict[str, Preset] = {
    # RFC 7518 §3.2: "A key of the same size as the hash output ... or larger MUST be used".
    "jwt_hs256": Preset(
        "RFC 7518: an HS256 key has at least 256 bits", 32, 256, _urlsafe_token(64)
    ),
    "jwt_hs384": Preset(
        "RFC 7518: an HS384 key has at least 384 bits", 48, 384, _urlsafe_token(96)
    ),
    "jwt_hs512": Preset(
        "RFC 7518: an HS512 key has at least 512 bits", 64, 512, _urlsafe_token(128)
    ),
    # What `manage.py check --deploy` (security.W009) demands: 50 characters, 5 distinct.
    "django": Preset(
        "Django's deploy check: 50 characters, 5 distinct",
        50,
        128,
        'python -c "from django.core.management.utils import get_random_secret_key; '
        'print(get_random_secret_key())"',
    ),
    # Flask signs its session cookie with HMAC-SHA1 (itsdangerous): a key at least as
    # strong as the hash, by the same rule as RFC 7518's.
    "flask": Preset(
        "Flask signs sessions with HMAC-SHA1: at least 160 bits",
        32,
        160,
        'python -c "import secrets; print(secrets.token_hex())"',
    ),
    # A Fernet key is 32 random bytes (16 signing, 16 encryption), url-safe base64.
    "fernet": Preset(
        "a Fernet key is 32 bytes of url-safe base64",
        32,
        256,
        'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"',
        exact_length=32,
    ),
}


class StrengthParams(CheckParams):
    source: ValueSource = Field(
        description="Where the secret is: env: NAME, dotenv: PATH with key: NAME, file: PATH "
        'or value: "${env:NAME}".'
    )
    min_length: int = Field(
        32,
        ge=1,
        le=1_000_000,
        description="Fewest characters (bytes of the decoded key with encoding hex or base64).",
    )
    min_entropy_bits: float = Field(
        128,
        ge=0,
        le=1_000_000,
        description="Fewest estimated bits: from the character classes, less what structure "
        "(runs, sequences, keyboard walks, repeated words or patterns) gives away; never more "
        "than length x log2(alphabet).",
    )
    encoding: Literal["raw", "hex", "base64"] = Field(
        "raw",
        description="How the value holds the key: raw text, hex, or base64 (standard or url-safe, "
        "padding optional). Length and strength are judged on the decoded bytes.",
    )
    forbid_placeholders: bool = Field(
        True,
        description="FAIL on placeholders: changeme, secret, password, your-secret-key-here, "
        "xxx..., the value's own name, a django-insecure- key, framework documentation examples.",
    )
    forbid_patterns: Regex | list[Regex] | None = Field(
        None, description="Regex(es) the value must not match, e.g. '^sk_test_' in production."
    )
    require_patterns: Regex | list[Regex] | None = Field(
        None, description="Regex(es) the value must match, e.g. '^sk_live_'."
    )
    preset: PresetName | None = Field(
        None,
        description="Minimums of a use: jwt_hs256/384/512 (a key at least as long as the hash, "
        "RFC 7518), django (50 characters), flask (160 bits), fernet (32 url-safe base64 "
        "bytes). Explicit minimums apply when stricter.",
    )

    @model_validator(mode="after")
    def _preset_fits_encoding(self) -> StrengthParams:
        explicit = "encoding" in self.model_fields_set
        if self.preset == "fernet" and explicit and self.encoding != "base64":
            raise ValueError(
                f"preset fernet reads the key as url-safe base64; remove encoding: {self.encoding}"
            )
        return self


@check("secret.strength", params=StrengthParams, category="security")
async def strength(p: StrengthParams, ctx: Context) -> Outcome:
    """Check that a secret is long, random-looking and not a placeholder."""
    from readycheck.checks.entropy import estimate_bytes_bits, estimate_text_bits

    label = p.source.label
    try:
        value = await read_value(p.source, ctx)
        check_plain(value, label)
    except SourceProblem as problem:
        return _unreadable(problem, label)

    preset = PRESETS[p.preset] if p.preset else None
    encoding = "base64" if p.preset == "fernet" else p.encoding
    try:
        key = _decode(value, encoding, urlsafe_only=p.preset == "fernet")
    except SourceProblem as problem:
        return Outcome.failed(
            f"{label} {problem.message}",
            evidence=[f"{label}: {len(value)} characters, fingerprint {fingerprint(value)}"],
            remediation=f"Store the key {encoding}-encoded, or set encoding to how it is stored.",
        )
    if key is None:
        length, unit, bits = len(value), "characters", estimate_text_bits(value)
        measured = f"{length} characters"
    else:
        length, unit, bits = len(key), "bytes", estimate_bytes_bits(key)
        measured = f"{length} bytes decoded from {encoding}"
        ctx.redactor.add(*_decoded_text(key))
    min_length = max(p.min_length, preset.min_length if preset else 0)
    min_bits = max(p.min_entropy_bits, preset.min_bits if preset else 0)

    problems: list[str] = []
    if preset and preset.exact_length is not None and length != preset.exact_length:
        problems.append(f"{measured}; a Fernet key is exactly {preset.exact_length}")
    elif length < min_length:
        problems.append(f"too short: {measured}, at least {min_length} required")
    if bits < min_bits:
        problems.append(f"estimated {bits:.0f} bits, at least {min_bits:.0f} required")
    if p.preset == "django" and len(set(value)) < 5:
        problems.append("fewer than 5 distinct characters (Django's deploy check refuses it)")
    if p.forbid_placeholders:
        kind = placeholder_kind(value, p.source.own_name)
        if kind:
            problems.append(f"a placeholder, not a secret: {kind}")
    for pattern in as_list(p.forbid_patterns):
        if matches(pattern, value):
            problems.append(f"matches the forbidden pattern '{pattern}'")
    for pattern in as_list(p.require_patterns):
        if not matches(pattern, value):
            problems.append(f"does not match the required pattern '{pattern}'")

    strength_text = f"{measured}, ~{bits:.0f} bits estimated"
    required = f"required: at least {min_length} {unit} and {min_bits:.0f} bits"
    evidence = [
        f"{label}: {strength_text}, fingerprint {fingerprint(value)}",
        compared(
            length >= min_length and bits >= min_bits,
            required + (f" ({preset.title})" if preset else ""),
        ),
    ]
    metrics = {"length": float(length), "entropy_bits": bits}
    if problems:
        return Outcome.failed(
            f"{label}: {'; '.join(problems)}",
            evidence=evidence,
            metrics=metrics,
            remediation=_remediation(preset, encoding),
        )
    return Outcome.passed(f"{label}: {strength_text}", evidence=evidence, metrics=metrics)


class DistinctParams(CheckParams):
    sources: list[ValueSource] = Field(
        min_length=2,
        description="The secrets that must all differ (e.g. the session key and the JWT "
        "signing key), each like secret.strength's source.",
    )

    @model_validator(mode="after")
    def _no_source_twice(self) -> DistinctParams:
        labels = [source.label for source in self.sources]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} is listed more than once")
        return self


@check("secret.distinct", params=DistinctParams, category="security")
async def distinct(p: DistinctParams, ctx: Context) -> Outcome:
    """Check that secrets meant for different purposes hold different values."""
    holders: dict[str, list[str]] = {}
    evidence: list[str] = []
    unreadable: list[SourceProblem] = []
    for source in p.sources:
        label = source.label
        try:
            value = await read_value(source, ctx)
            check_plain(value, label)
        except SourceProblem as problem:
            unreadable.append(problem)
            evidence.append(f"{label}: {problem.message}")
            continue
        evidence.append(f"{label}: {len(value)} characters, fingerprint {fingerprint(value)}")
        # Compare by keyed hash, so that equal values meet in one dictionary slot.
        holders.setdefault(
            hmac.new(_RUN_KEY, _bytes(value), hashlib.sha256).hexdigest(), []
        ).append(label)
    shared = [labels for labels in holders.values() if len(labels) > 1]
    problems = [problem.message for problem in unreadable]
    problems += [f"{_joined(labels)} hold the same value" for labels in shared]
    if problems:
        summary = "; ".join(problems)
        if not shared and all(problem.status == "ERROR" for problem in unreadable):
            return Outcome.errored(summary, evidence=evidence)
        return Outcome.failed(
            summary,
            evidence=evidence,
            remediation="Give each purpose its own random key: one key reused for sessions "
            "and token signing means a leak of either forges both.",
        )
    return Outcome.passed(f"{len(p.sources)} secrets, all different", evidence=evidence)


def fingerprint(value: str) -> str:
    """8 hex digits that tell values apart within this run (see the module docstring)."""
    return hmac.new(_RUN_KEY, _bytes(value), hashlib.sha256).hexdigest()[:8]


def _bytes(value: str) -> bytes:
    # Environment values that are not UTF-8 arrive with surrogate escapes.
    return value.encode("utf-8", "surrogateescape")


def _unreadable(problem: SourceProblem, label: str) -> Outcome:
    if problem.status == "ERROR":
        return Outcome.errored(problem.message, evidence=[label])
    return Outcome.failed(
        problem.message,
        evidence=[label],
        remediation="Provide the secret to the deployment (environment, .env or mounted file).",
    )


def _remediation(preset: Preset | None, encoding: str) -> str:
    if preset is not None:
        command = preset.remediation
    elif encoding == "hex":
        command = 'python -c "import secrets; print(secrets.token_hex(32))"'
    elif encoding == "base64":
        command = 'python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"'
    else:
        command = _urlsafe_token(48)
    return f"Generate a new random key ({command}), store it in the secret store, and rotate."


def _joined(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


# -- decoding ----------------------------------------------------------------------------------

_BASE64_CORE = frozenset(string.ascii_letters + string.digits)


def _decode(value: str, encoding: str, *, urlsafe_only: bool = False) -> bytes | None:
    """The key bytes (None for raw); SourceProblem naming positions, never characters."""
    if encoding == "raw":
        return None
    if encoding == "hex":
        bad = next((i for i, c in enumerate(value) if c not in string.hexdigits), None)
        if bad is not None:
            raise SourceProblem(
                f"is not hex: the character at position {bad + 1} is not a hex digit"
            )
        if len(value) % 2:
            raise SourceProblem(f"is not hex: {len(value)} digits, an odd number")
        return bytes.fromhex(value)
    standard = "+" in value or "/" in value
    urlsafe = "-" in value or "_" in value
    if standard and urlsafe:
        raise SourceProblem(
            "is not base64: it mixes the standard (+ /) and url-safe (- _) alphabets"
        )
    if urlsafe_only and standard:
        raise SourceProblem(
            "is standard base64; a Fernet key is url-safe base64 (- and _ instead of + and /)"
        )
    body = value.rstrip("=")
    padding = len(value) - len(body)
    alphabet = _BASE64_CORE | set("-_" if urlsafe else "+/")
    bad = next((i for i, c in enumerate(body) if c not in alphabet), None)
    if bad is not None:
        raise SourceProblem(
            f"is not base64: the character at position {bad + 1} is outside the base64 alphabet"
        )
    if len(body) % 4 == 1 or padding > 2 or (padding and len(value) % 4):
        raise SourceProblem(f"is not base64: no base64 text is {len(value)} characters long")
    try:
        return base64.b64decode(
            body + "=" * (-len(body) % 4), altchars=b"-_" if urlsafe else None, validate=True
        )
    except (binascii.Error, ValueError):
        raise SourceProblem("is not base64: it does not decode") from None


def _decoded_text(key: bytes) -> list[str]:
    """Decoded key bytes that are text (a base64-encoded password) are a secret too."""
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return []
    return [text] if len(text) >= 8 and text.isprintable() else []


# -- placeholders ------------------------------------------------------------------------------

# Compared after lower-casing and dropping - _ . and spaces ("Your-Secret-Key-Here").
_PLACEHOLDER_LIST = """
    changeme changeit changethis changemeplease pleasechangeme replaceme replacethis
    secret secrets secretkey mysecret mysecretkey yoursecret yoursecretkey yoursecretkeyhere
    yourkeyhere yourapikey yourapikeyhere yourtoken yourtokenhere supersecret supersecretkey
    topsecret notsecret notasecret thisisasecret thisisnotasecret s3cr3t secret123
    password passw0rd p@ssw0rd mypassword mysecretpassword password123 admin root default
    test testing dev development local example sample dummy placeholder todo tbd fixme none
    null undefined empty insecure key apikey token keyboardcat
    your256bitsecret your384bitsecret your512bitsecret somerandomstring
    thistokenisnotsosecretchangeit
"""
_PLACEHOLDERS = frozenset(_PLACEHOLDER_LIST.split())
_PLACEHOLDER_MARKERS = ("changeme", "changethis", "replaceme", "yoursecret", "placeholder")
_DOC_EXAMPLES = frozenset({'_5#y2L"F4Q8z\\n\\xec]/', "b'_5#y2L\"F4Q8z\\n\\xec]/'"})
_TEMPLATE = re.compile(r"^(\$\{.*\}|\$[A-Za-z_]\w*|\{\{.*\}\}|<.*>|%\(.*\)s|__\w+__)$")
_FOLD = re.compile(r"[-_.\s]")


def placeholder_kind(value: str, own_name: str | None) -> str | None:
    """Why the value is a placeholder rather than a secret, without quoting it; or None."""
    folded = _FOLD.sub("", value.lower())
    if value.startswith("django-insecure-"):
        return "Django's insecure development key"
    if value in _DOC_EXAMPLES:
        return "Flask's documentation example"
    if folded in _PLACEHOLDERS:
        return "a well-known placeholder word"
    if any(marker in folded for marker in _PLACEHOLDER_MARKERS):
        return "it contains a placeholder word"
    if len(set(folded)) == 1:
        return "one character repeated"
    if own_name and folded == _FOLD.sub("", own_name.lower()):
        return "the value is its own name"
    if _TEMPLATE.match(value):
        return "a template marker that was never filled in"
    return None
