"""The PostgreSQL connection string as people write it, read the way libpq reads it.

People paste the DSN from their application's settings: a libpq URL (``postgresql://`` or
``postgres://``), libpq ``key=value`` pairs, or a SQLAlchemy URL whose scheme names a
driver (``postgresql+psycopg://``, ``+psycopg2``, ``+asyncpg``). libpq knows no driver:
the ``+driver`` part is removed here, in the one type every PostgreSQL check's ``dsn``
has, and the checks say so once in their evidence. asyncpg spells ``sslmode`` as ``ssl``
(``?ssl=require``); under that driver it is read as ``sslmode``.

A DSN is checked when the profile loads, with no network: libpq's own parser
(``PQconninfoParse``, through psycopg, imported only then) finds what is malformed and
which keywords libpq does not know, and the few values libpq only checks when it connects
(the port, ``sslmode`` and the other modes) are checked here. libpq's messages echo the
string, password included, so none is passed on: each problem is told in our own words,
naming at most a keyword, which holds no secret.
"""

from __future__ import annotations

import difflib
import re

from readycheck.params import Secret, SecretDsn
from readycheck.redact import embedded_credentials

_DRIVER_SCHEME = re.compile(r"(?i)^(postgres(?:ql)?)\+([a-z0-9_]+)(://)")
_LIBPQ_SCHEME = re.compile(r"(?i)^postgres(?:ql)?://")
_ANY_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# Where libpq's message quotes a keyword (a name, never a value).
_NAMED = re.compile(
    r"(?:connection option|invalid URI query parameter:"
    r'|extra key/value separator "=" in URI query parameter:) "([A-Za-z0-9_.\-]{1,40})"'
)

# Values libpq accepts for the settings it only checks when it connects.
_MODES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
}

# libpq's words -> ours. Only a keyword's name (never a value) is ever shown.
_PARSE_PROBLEMS = (
    ("invalid connection option", "unknown connection option"),
    ("invalid uri query parameter", "unknown connection option"),
    ("missing key/value separator", 'a URL query parameter lacks its "="'),
    ("extra key/value separator", 'a URL query parameter has more than one "="'),
    ('missing "=" after', 'a key=value setting lacks its "="'),
    ("unterminated quoted string", "a quoted value is not closed"),
    ("unexpected spaces", "a URL may not contain spaces: percent-encode them (%20)"),
    ("invalid percent-encoded token", "the URL has a bad %-escape"),
    ("invalid uri", "the URL is malformed"),
    ("in uri", "the URL is malformed"),
    ("invalid integer value", "a numeric setting is not a number"),
    ("invalid port number", "the port is not a number"),
    ("invalid sslmode value", "sslmode has an unknown value"),
    ("invalid value for parameter", "a setting has an invalid value"),
)

REMEDY = (
    "Write it as postgresql://user:password@host:5432/dbname (percent-encode special "
    "characters in the password: / is %2F, @ is %40, a space %20) or as key=value pairs "
    "(quote a value with spaces: password='a b')."
)


class DsnError(ValueError):
    """A DSN libpq would refuse; the message is safe to show (it echoes no value)."""


class PostgresDsn(SecretDsn):
    """A PostgreSQL DSN: libpq URL or ``key=value`` form, or a SQLAlchemy URL.

    :meth:`reveal` gives the libpq form; :attr:`reading` says, in words, what was changed
    to get it (``None`` when nothing was).
    """

    __slots__ = ("_pasted", "reading")

    def __init__(self, value: str) -> None:
        libpq, reading = _libpq_form(value)
        super().__init__(libpq)
        self._pasted = value
        self.reading = reading

    def redaction_values(self) -> list[str]:
        values = super().redaction_values()
        if self._pasted != self._value:
            values += [self._pasted, *embedded_credentials(self._pasted)]
        return [value for value in values if value]

    @classmethod
    def _validate(cls, value: object) -> Secret:
        secret = super()._validate(value)
        try:
            parse(secret.reveal())
        except DsnError as exc:
            raise ValueError(f"not a valid PostgreSQL connection string: {exc}") from None
        return secret


def parse(dsn: str) -> dict[str, str]:
    """The settings of a DSN, as libpq reads them; :class:`DsnError` when it would refuse
    them (when parsing, or when connecting for a value it checks only then)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    scheme = _ANY_SCHEME.match(dsn)
    if scheme and not _LIBPQ_SCHEME.match(dsn):
        raise DsnError(
            f"a {scheme.group(1)}:// URL is not a PostgreSQL one: write postgresql:// "
            "(a SQLAlchemy postgresql+driver:// URL is read as postgresql://)"
        )
    try:
        parsed = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise DsnError(problem(str(exc)) or "libpq cannot parse it") from None
    settings = {key: str(value) for key, value in parsed.items() if value is not None}
    for port in settings.get("port", "").split(","):
        if port.strip() and not (port.strip().isdigit() and 0 < int(port) < 65536):
            raise DsnError(
                "the port is not a number from 1 to 65535 (a / or : in the password "
                "must be percent-encoded: %2F, %3A)"
            )
    for key, valid in _MODES.items():
        if key in settings and settings[key] not in valid:
            raise DsnError(f"{key} has an unknown value (valid: {', '.join(valid)})")
    return settings


def problem(message: str) -> str | None:
    """What is wrong with a DSN, told from libpq's message without echoing any of it
    beyond the name of a connection option."""
    text = message.lower()
    for needle, meaning in _PARSE_PROBLEMS:
        if needle in text:
            named = _NAMED.search(message)
            if named is None:
                return meaning
            if meaning == "unknown connection option":
                return f'{meaning} "{named.group(1)}"{_did_you_mean(named.group(1))}'
            return f"{meaning} ({named.group(1)})"
    return None


def _did_you_mean(name: str) -> str:
    from psycopg import pq

    keywords = sorted(
        option.keyword.decode() for option in pq.Conninfo.get_defaults() if option.keyword
    )
    close = difflib.get_close_matches(name.lower(), keywords, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _libpq_form(value: str) -> tuple[str, str | None]:
    """A SQLAlchemy URL as libpq reads it, and what was changed, in words."""
    dsn = value.strip()
    match = _DRIVER_SCHEME.match(dsn)
    if match is None:
        return dsn, None
    driver = match.group(2).lower()
    rest = dsn[match.end() :]
    reading = f"a SQLAlchemy URL, read as libpq's {match.group(1)}:// (driver +{driver} removed)"
    if driver == "asyncpg":
        rest, renamed = _ssl_as_sslmode(rest)
        if renamed:
            reading += f"; asyncpg's ssl={renamed} read as sslmode={renamed}"
    return f"{match.group(1)}://{rest}", reading


def _ssl_as_sslmode(rest: str) -> tuple[str, str | None]:
    # libpq takes userinfo up to the first "@" before any "/": a "?" in a password is
    # part of it, so the query starts at the first "?" after that point.
    end = len(rest)
    for index, char in enumerate(rest):
        if char in "@/":
            end = index
            break
    start = end + 1 if end < len(rest) and rest[end] == "@" else 0
    head, sep, query = rest[start:].partition("?")
    if not sep:
        return rest, None
    renamed = None
    params = []
    for param in query.split("&"):
        key, equals, val = param.partition("=")
        if key == "ssl" and equals and val in _MODES["sslmode"]:
            param, renamed = f"sslmode={val}", val
        params.append(param)
    return f"{rest[:start]}{head}?{'&'.join(params)}", renamed
