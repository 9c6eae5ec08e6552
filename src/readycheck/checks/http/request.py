"""The parameters every HTTP-family check shares, validated when the profile loads.

``HttpParams`` is what a connection needs (url, headers, timeout, TLS trust);
``RequestParams`` adds what one HTTP request needs (method, redirects, the body cap);
``PayloadParams`` adds a body to send. Header values named in ``secret_headers``, and
those of headers whose names look secret (Authorization, Cookie, X-Api-Key), are
registered with the redactor, as are credentials written into a URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator

from readycheck.checks.patterns import Argument
from readycheck.params import INPUT_FILE, BufferSize, CheckParams
from readycheck.redact import credential_forms, looks_secret
from readycheck.units import Duration, Size

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SECRET_QUERY_KEYS = {"password", "passwd", "pass", "token", "secret", "api_key", "apikey", "key"}

HeaderValue = Argument
"""A header value: YAML numbers and booleans are taken as the text written (``X-Version: 2``)."""

Timeout = Annotated[
    Duration | None,
    Field(
        description="Connect and read timeout, and the bound on the whole exchange "
        "(default: the check's timeout)."
    ),
]
VerifyTls = Annotated[
    bool,
    Field(description="Verify the server's certificate and host name (https, wss)."),
]
CaFile = Annotated[
    str | None,
    # Empty means none, so that a profile can write `ca_file: ${env:CA_FILE:-}`.
    BeforeValidator(lambda value: None if isinstance(value, str) and not value.strip() else value),
    INPUT_FILE,
    Field(
        description="PEM bundle to trust instead of the system's (a private CA, or a "
        "self-signed certificate to pin); relative to the profile's directory."
    ),
]
Method = Annotated[
    Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value),
]


def check_header_name(name: str) -> str:
    """``name`` if it is a valid HTTP header name (an RFC 9110 token); a ValueError otherwise."""
    if not _TOKEN.match(name):
        raise ValueError(f"{name!r} is not a valid header name")
    return name


def check_url(value: str, schemes: tuple[str, ...]) -> str:
    """``value`` if it is an absolute URL with one of ``schemes``; a ValueError otherwise.

    The URL is never echoed in the message: it may carry credentials.
    """
    url = value.strip()
    wanted = " or ".join(f"{scheme}://" for scheme in schemes)
    if any(char.isspace() for char in url):
        raise ValueError("not a valid URL: it contains whitespace (encode a space as %20)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid URL: the port must be a number between 0 and 65535") from None
    if parts.scheme.lower() not in schemes:
        found = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(f"expected a URL starting with {wanted}, got {found}")
    if not parts.hostname:
        raise ValueError(f"not a valid URL: no host after {parts.scheme}://")
    if port == 0:
        raise ValueError("not a valid URL: port 0")
    if "//" in parts.path:
        # A base and a path joined by hand (`${vars.base}/health` with a base ending in
        # a slash): the service would see an empty path segment, not /health.
        url = urlunsplit(parts._replace(path=re.sub(r"/{2,}", "/", parts.path)))
    return url


def url_secrets(url: str) -> Iterator[str]:
    """Credentials written into a URL: user, password, and secret-looking query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    for value in (parts.username, parts.password):
        if value:
            yield value
            yield unquote(value)
    if parts.username and parts.password:
        # What Basic authentication sends (base64-encoded, which the redactor also masks).
        yield f"{unquote(parts.username)}:{unquote(parts.password)}"
    for key, value in parse_qsl(parts.query):
        if value and (key.lower() in _SECRET_QUERY_KEYS or looks_secret(key)):
            yield value


def display_url(url: str) -> str:
    """The URL as shown in evidence: no userinfo, secret-looking query values masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    query = "&".join(
        f"{key}=***" if key.lower() in _SECRET_QUERY_KEYS or looks_secret(key) else f"{key}={v}"
        for key, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return f"{parts.scheme}://{netloc}{parts.path or '/'}" + (f"?{query}" if query else "")


def display_location(location: str) -> str:
    """A redirect's Location header as shown in evidence: display_url when absolute."""
    return display_url(location) if "://" in location else location


class ConnectionParams(CheckParams):
    """What reaching an HTTP server takes: the URL, headers (secret ones registered with
    the redactor) and TLS trust. Shared by every HTTP-family check and the latency probe."""

    schemes: ClassVar[tuple[str, ...]] = ("http", "https")

    url: str = Field(description="The URL to probe, e.g. https://api.example.com/health.")
    headers: dict[str, HeaderValue] = Field(
        default_factory=dict, description="Request headers to send (name: value)."
    )
    secret_headers: list[str] = Field(
        default_factory=list,
        description="Names in `headers` whose values are never shown (Authorization, "
        "Cookie and names like *-Token or *-Key are secret anyway).",
    )
    verify_tls: VerifyTls = True
    ca_file: CaFile = None

    @field_validator("url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        return check_url(value, cls.schemes)

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            check_header_name(name)
            # Never echo the value: it may be a secret.
            if any(char in value for char in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} contains a line break")
            if not value.isascii():
                raise ValueError(f"the value of header {name!r} is not ASCII")
        return headers

    @model_validator(mode="after")
    def _secret_headers_are_sent(self) -> ConnectionParams:
        sent = {name.lower() for name in self.headers}
        for name in self.secret_headers:
            if name.lower() not in sent:
                raise ValueError(f"secret_headers names {name!r}, which is not in headers")
        return self

    def is_secret_header(self, name: str) -> bool:
        lowered = name.lower()
        return looks_secret(name) or any(lowered == s.lower() for s in self.secret_headers)

    def secret_values(self) -> Iterator[str]:
        yield from super().secret_values()
        yield from url_secrets(self.url)
        for name, value in self.headers.items():
            if self.is_secret_header(name):
                yield from credential_forms(value)

    @property
    def shown_url(self) -> str:
        return display_url(self.url)


class HttpParams(ConnectionParams):
    """What every HTTP-family check needs to reach a server, with its time limit."""

    timeout: Timeout = None


class RequestParams(HttpParams):
    """An HTTP request: the connection, plus method, redirects and the response cap."""

    method: Method = Field("GET", description="HTTP method.")
    follow_redirects: bool = Field(
        False, description="Follow 3xx redirects (at most 10) instead of judging the 3xx."
    )
    max_body: BufferSize = Field(
        Size("1MB"),
        description="Largest response body read; a bigger one is cut off there and FAILs.",
    )


class PayloadParams(RequestParams):
    """A request that may carry a body."""

    json_body: Any = Field(
        None, alias="json", description="A JSON document to send as the body (sets Content-Type)."
    )
    body: str | None = Field(None, description="Text to send as the body.")

    @model_validator(mode="after")
    def _one_body(self) -> PayloadParams:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give either json or body, not both")
        return self

    def payload(self) -> tuple[bytes | None, dict[str, str]]:
        """The body to send, and the Content-Type it implies unless `headers` set one."""
        if self.json_body is not None:
            import json

            data = json.dumps(self.json_body, separators=(",", ":")).encode()
            kind = "application/json"
        elif self.body is not None:
            data, kind = self.body.encode(), "text/plain; charset=utf-8"
        else:
            return None, {}
        if any(name.lower() == "content-type" for name in self.headers):
            return data, {}
        return data, {"Content-Type": kind}
