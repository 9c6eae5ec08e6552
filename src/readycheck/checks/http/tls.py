"""tls.certificate: the certificate a server presents is trusted, valid for its name, and
not about to expire.

The handshake verifies as a client would (trust store or ``ca_file``, host name, dates).
When it fails, a second handshake that verifies nothing fetches the certificate anyway,
so the report says what is wrong with it: who issued it, for which names, until when.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from readycheck.checks.http.certificates import (
    CertificateFacts,
    TrustError,
    Verification,
    describe_verification,
    read_certificate,
    tls_context,
    unverified_context,
)
from readycheck.checks.http.client import budget
from readycheck.checks.http.network import describe_connection_error, last_resort
from readycheck.checks.http.request import CaFile, Timeout, VerifyTls, check_url, url_secrets
from readycheck.params import CheckParams
from readycheck.registry import check
from readycheck.results import Outcome

if TYPE_CHECKING:
    import ssl

    from readycheck.context import Context

_CLOSE_TIMEOUT_S = 1.0
_PLAIN = ("http", "ws")


class CertificateParams(CheckParams):
    url: str | None = Field(
        None,
        description="An https:// (or wss://) URL; its host and port are checked. An "
        "http:// (or ws://) URL is refused unless plain_http is skip.",
    )
    host: str | None = Field(None, description="The host to connect to, instead of url.")
    port: int | None = Field(None, ge=1, le=65535, description="The port, with host (default 443).")
    server_name: str | None = Field(
        None, description="The name sent (SNI) and verified (default: the host)."
    )
    min_days_valid: int = Field(
        14,
        ge=0,
        le=36_500,
        description="FAIL when the certificate expires in fewer days than this.",
    )
    warn_days: int = Field(
        30,
        ge=0,
        le=36_500,
        description="WARN when the certificate expires in fewer days than this.",
    )
    timeout: Timeout = None
    verify_tls: VerifyTls = True
    ca_file: CaFile = None
    plain_http: Literal["refuse", "skip"] = Field(
        "refuse",
        description="What an http:// (or ws://) url gets: refuse (a profile error: there is "
        "no certificate to check) or skip (the check does not run, and the report lists it "
        "among the checks not run, saying the service answers without TLS). skip suits a "
        "profile whose url is https:// in production and http:// on a laptop.",
    )

    @field_validator("url")
    @classmethod
    def _tls_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value, ("https", "wss", *_PLAIN))

    @model_validator(mode="after")
    def _one_target(self) -> CertificateParams:
        if (self.url is None) == (self.host is None):
            raise ValueError("give either url or host (with port), not both or neither")
        if self.url is not None and self.port is not None:
            raise ValueError("port goes with host; a url carries its own port")
        if self.plain and self.plain_http == "refuse":
            raise ValueError(
                "url: expected a URL starting with https:// or wss://, got scheme "
                f"{urlsplit(self.url or '').scheme!r} (plain_http: skip lets the check skip "
                "a plain HTTP url)"
            )
        return self

    @property
    def plain(self) -> bool:
        """Whether the url is plain HTTP (or WebSocket): no TLS, no certificate."""
        return self.url is not None and urlsplit(self.url).scheme.lower() in _PLAIN

    def secret_values(self) -> Iterator[str]:
        yield from super().secret_values()
        if self.url:
            yield from url_secrets(self.url)

    def target(self) -> tuple[str, int]:
        if self.url is not None:
            parts = urlsplit(self.url)
            return parts.hostname or "", parts.port or (80 if self.plain else 443)
        assert self.host is not None
        return self.host, self.port or 443


@check("tls.certificate", params=CertificateParams, category="security")
async def certificate(p: CertificateParams, ctx: Context) -> Outcome:
    """Check the server's TLS certificate: trusted, right host, dates, days left."""
    import ssl

    host, port = p.target()
    if p.plain:
        return Outcome.skipped(
            f"not run: {host}:{port} is served over plain HTTP, so there is no certificate "
            "to check (plain_http: skip)"
        )
    name = p.server_name or host
    where = f"{host}:{port}"
    limit = budget(p.timeout, ctx)
    deadline = time.monotonic() + limit.seconds
    try:
        context = await tls_context(ctx, verify=p.verify_tls, ca_file=p.ca_file)
    except TrustError as exc:
        return exc.outcome()

    failed: Verification | None = None
    try:
        der, version = await _handshake(host, port, context, name, limit.seconds)
    except ssl.SSLCertVerificationError as exc:
        failed = describe_verification(exc, name)
        try:
            left = max(0.05, deadline - time.monotonic())
            der, version = await _handshake(host, port, unverified_context(), name, left)
        except (OSError, TimeoutError):
            return Outcome.failed(f"{where}: TLS: {failed.text}")
    except TimeoutError:
        return Outcome.failed(
            f"{where}: timed out after {limit.label} (TCP connect or TLS handshake)"
        )
    except OSError as exc:
        described = describe_connection_error(exc, host, port)
        return Outcome.failed(f"{where}: {described or last_resort(exc, ctx.redactor)}")

    facts = read_certificate(der)
    days = facts.days_left()
    evidence = _evidence(facts, days, version, p.verify_tls)
    metrics: dict[str, float] = {"days_left": round(days, 2)}
    if failed is None:
        failed = _dates(facts, days)
    if failed is not None:
        return Outcome.failed(
            f"{where}: TLS: {failed.text}",
            evidence=evidence,
            metrics=metrics,
            remediation=_REMEDIATION[failed.kind],
        )
    until = facts.not_after.strftime("%Y-%m-%d")
    if days < p.min_days_valid:
        return Outcome.failed(
            f"{where}: certificate expires in {_days(days)} ({until}), fewer than "
            f"min_days_valid ({p.min_days_valid})",
            evidence=evidence,
            metrics=metrics,
            remediation="Renew the certificate now.",
        )
    if days < p.warn_days:
        return Outcome.warned(
            f"{where}: certificate expires in {_days(days)} ({until}), within warn_days "
            f"({p.warn_days})",
            evidence=evidence,
            metrics=metrics,
            remediation="Renew the certificate soon, or check that automatic renewal works.",
        )
    return Outcome.passed(
        f"{where}: certificate valid until {until} ({_days(days)} left)",
        evidence=evidence,
        metrics=metrics,
    )


async def _handshake(
    host: str, port: int, context: ssl.SSLContext, server_name: str, seconds: float
) -> tuple[bytes, str]:
    """Connect, complete the TLS handshake, and return the peer's certificate (DER)."""
    import asyncio
    import contextlib

    async with asyncio.timeout(seconds):
        _, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=server_name, ssl_handshake_timeout=seconds
        )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        version = ssl_object.version() if ssl_object is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), _CLOSE_TIMEOUT_S)
    if not der:
        raise OSError(f"{host}:{port} presented no certificate")
    return der, version or "TLS"


def _dates(facts: CertificateFacts, days: float) -> Verification | None:
    """Date problems found by us, for when verification is off (verify_tls: false)."""
    if days < 0:
        return Verification("expired", "certificate has expired")
    if datetime.now(UTC) < facts.not_before:
        return Verification("not_yet_valid", "certificate is not yet valid")
    return None


def _evidence(facts: CertificateFacts, days: float, version: str, verified: bool) -> list[str]:
    left = f"expired {_days(-days)} ago" if days < 0 else f"{_days(days)} left"
    lines = [
        f"subject: {facts.subject}",
        f"issuer: {facts.issuer}" + (" (self-signed)" if facts.self_signed else ""),
        f"not_before: {facts.not_before:%Y-%m-%d %H:%M} UTC",
        f"not_after: {facts.not_after:%Y-%m-%d %H:%M} UTC ({left})",
        f"SANs: {', '.join(facts.names) or 'none'}",
        f"protocol: {version}",
    ]
    if not verified:
        lines.append("chain and host name not verified (verify_tls: false)")
    return lines


def _days(days: float) -> str:
    whole = int(days)
    return "1 day" if whole == 1 else f"{whole} days"


_REMEDIATION = {
    "expired": "Renew the certificate and reload the server (or its proxy).",
    "not_yet_valid": "Check the server's clock and the certificate's not_before date.",
    "wrong_host": "Issue a certificate that names this host (subjectAltName), or set "
    "server_name to the name clients use.",
    "untrusted": "Serve the full chain from a trusted CA, or trust the private CA with ca_file.",
    "revoked": "Replace the revoked certificate.",
    "invalid": "Replace the certificate.",
}
