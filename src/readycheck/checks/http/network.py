"""What went wrong on the way to a server, in words a release manager can act on.

Libraries wrap the operating system's error in their own, often several layers deep and
with the full URL (credentials included) in the message: httpx's ConnectError wraps
httpcore's, which wraps anyio's "All connection attempts failed", whose cause is an
exception group holding the ConnectionRefusedError. We walk that chain for the error
that says what happened and build our own sentence; a library's text is shown only as a
last resort, and then redacted.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import TYPE_CHECKING

from readycheck.checks.http.certificates import describe_verification

if TYPE_CHECKING:
    from readycheck.redact import Redactor

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything behind it: causes, contexts and members of groups."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
        if current.__context__ is not None:
            pending.append(current.__context__)


def describe_connection_error(exc: BaseException, host: str, port: int | None) -> str | None:
    """A sentence for a failure to connect or to complete TLS, or None if not one."""
    import socket
    import ssl

    where = f"{host}:{port}" if port else host
    for cause in causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS: {describe_verification(cause, host).text}"
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or (cause.strerror or "handshake failed").lower()
            return f"TLS handshake with {where} failed: {reason.replace('_', ' ').lower()}"
        if isinstance(cause, socket.gaierror):
            return f"name does not resolve: {host}"
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {where}"
        if isinstance(cause, ConnectionResetError):
            return f"connection reset by {where}"
        if isinstance(cause, OSError) and cause.errno in _UNREACHABLE:
            return f"{where} is unreachable ({cause.strerror or 'no route'})"
    return None


def last_resort(exc: BaseException, redactor: Redactor) -> str:
    """An unexpected library error, as ``Type: first line of its message``, redacted."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = redactor.redact(text)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
