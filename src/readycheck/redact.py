"""The one place that knows secret values and scrubs every string that leaves the process.

The profile loader registers every value that lands in a secret-typed parameter (and
the password inside a DSN, and values interpolated from environment variables whose
names look secret); the engine, every reporter and the log handler pass their text
through :meth:`Redactor.redact`. Beyond the registered values, credentials inside URLs
and libpq ``password=`` settings are masked wherever they appear, so a DSN that was never
registered (a library echoing its conninfo) still shows no password.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Iterable, Iterator
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

MASK = "***"
# A secret shorter than this is not masked in free text: a two- or three-letter value
# ("app", "dev") would otherwise be masked in every word that contains it, and is no
# secret anyway. URL credentials and password= settings are masked whatever their length.
MIN_MASKED_LENGTH = 4

# scheme://user:password@host -> scheme://user:***@host
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s/:@]*:)([^\s@/]+)(@)")
# libpq keyword form: password=secret or password='sec ret'
_CONNINFO_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)")
_CONNINFO_PASSWORD_VALUE = re.compile(r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
_SECRET_QUERY_KEYS = {"password", "passwd", "pass", "token", "secret", "api_key", "apikey", "key"}
_SECRET_WORDS = {
    "KEY",
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "PASS",
    "PWD",
    "DSN",
    "CREDENTIAL",
    "CREDENTIALS",
    "AUTH",
    "AUTHORIZATION",
    "PRIVATE",
    "COOKIE",
    "SIGNATURE",
    "APIKEY",
}
_WORD = re.compile(r"[A-Za-z0-9]+")


def looks_secret(name: str) -> bool:
    """Whether a variable or header name suggests its value is a secret (``API_KEY``)."""
    parts = [part.upper() for part in _WORD.findall(name)]
    return any(part in _SECRET_WORDS for part in parts) or any(
        part.endswith(("KEY", "TOKEN", "SECRET", "PASSWORD")) for part in parts
    )


def credential_forms(value: str) -> Iterator[str]:
    """A secret header value and the credential inside it (``Bearer <token>``, and the
    decoded ``user:password`` of Basic), so a part of it shown alone is masked too."""
    yield value
    scheme, _, credential = value.strip().partition(" ")
    credential = credential.strip()
    if not credential:
        return
    yield credential
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credential, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return
        yield decoded
        _, _, password = decoded.partition(":")
        if password:
            yield password


def url_has_credentials(value: str) -> bool:
    """Whether a value is a URL carrying a password, malformed ones included: a password
    with an unencoded ``/`` or ``@`` breaks the URL but is no less a password."""
    if _URL_PASSWORD.search(value) is not None:
        return True
    _, scheme_sep, rest = value.partition("://")
    return bool(scheme_sep) and ":" in rest.rpartition("@")[0]


def embedded_credentials(dsn: str) -> Iterator[str]:
    """Passwords inside a URL (userinfo or query) or a libpq keyword string."""
    for match in _CONNINFO_PASSWORD_VALUE.finditer(dsn):
        raw = match.group(1)
        yield raw
        if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
            yield raw[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    if "://" not in dsn:
        return
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:
        # Not a URL we can parse: mask what sits between the first ':' after the scheme
        # and the last '@', which is where a password would be.
        head = dsn.split("://", 1)[1].rsplit("@", 1)
        if len(head) == 2 and ":" in head[0]:
            userinfo_password = head[0].split(":", 1)[1]
            yield userinfo_password
            yield unquote(userinfo_password)
        return
    if password:
        yield password
        yield unquote(password)
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if key.lower() in _SECRET_QUERY_KEYS:
            yield value


def forms_of(secret: str) -> set[str]:
    """The forms in which a secret may travel: as is, URL-encoded and base64-encoded."""
    # Environment values that are not UTF-8 hold surrogate escapes: encode them back to
    # their bytes (a strict encode raised, and readycheck stopped with an internal error).
    raw = secret.encode("utf-8", "surrogateescape")
    forms = {secret, quote(raw, safe=""), quote_plus(raw), quote(raw)}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode()
        forms.update({text, text.rstrip("=")})
    return {form for form in forms if form}


class Redactor:
    """Knows the run's secret values; masks them, and URL credentials, in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            if len(secret) >= MIN_MASKED_LENGTH:
                self._forms |= forms_of(secret)
        self._pattern = None

    def __contains__(self, value: str) -> bool:
        return value in self._forms

    def __len__(self) -> int:
        return len(self._forms)

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._forms:
            if self._pattern is None:
                # Longest first, so a secret containing another is masked whole.
                ordered = sorted(self._forms, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(form) for form in ordered))
            text = self._pattern.sub(MASK, text)
        text = _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text)
        return _CONNINFO_PASSWORD.sub(rf"\g<1>{MASK}", text)


class RedactingFilter(logging.Filter):
    """A logging filter that renders each record and masks what the redactor knows."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = self.redactor.redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True
