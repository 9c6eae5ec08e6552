"""TLS trust and certificates: the contexts every check of the family connects with, what
a verification failure means, and the facts of a certificate (parsed with cryptography).

One trust policy for HTTP, TLS and WebSocket checks: the system's trust store (OpenSSL's
default paths, which honour SSL_CERT_FILE and SSL_CERT_DIR), falling back to certifi's
bundle where the system has none; or, with ``ca_file``, that bundle alone, as curl's
``--cacert`` does, so that a self-signed certificate can be pinned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from readycheck.results import Outcome

if TYPE_CHECKING:
    import ssl

    from readycheck.context import Context

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) that a check tells apart.
_NOT_YET_VALID = 9
_EXPIRED = 10
_SELF_SIGNED = 18
_SELF_SIGNED_IN_CHAIN = 19
_UNKNOWN_ISSUER = (2, 20, 21)
_REVOKED = 23
_HOST_MISMATCH = (62, 64)

VerificationKind = Literal[
    "expired", "not_yet_valid", "wrong_host", "untrusted", "revoked", "invalid"
]


class TrustError(Exception):
    """``ca_file`` cannot be used; the message names it and says why (no secret in it)."""

    def outcome(self) -> Outcome:
        return Outcome.errored(
            str(self), remediation="Fix ca_file: it must be a PEM bundle of CA certificates."
        )


@dataclass(frozen=True)
class Verification:
    kind: VerificationKind
    text: str


def describe_verification(error: ssl.SSLCertVerificationError, host: str) -> Verification:
    """What a failed verification means, from OpenSSL's code rather than its wording."""
    code = error.verify_code
    if code == _EXPIRED:
        return Verification("expired", "certificate has expired")
    if code == _NOT_YET_VALID:
        return Verification("not_yet_valid", "certificate is not yet valid")
    if code in _HOST_MISMATCH:
        return Verification("wrong_host", f"certificate is not valid for {host}")
    if code == _SELF_SIGNED:
        return Verification(
            "untrusted", "self-signed certificate, not trusted (pin it with ca_file)"
        )
    if code == _SELF_SIGNED_IN_CHAIN:
        return Verification(
            "untrusted", "self-signed certificate in the chain, not trusted (trust it with ca_file)"
        )
    if code in _UNKNOWN_ISSUER:
        return Verification(
            "untrusted",
            "certificate not trusted: its issuer is unknown (pass the CA bundle as ca_file)",
        )
    if code == _REVOKED:
        return Verification("revoked", "certificate has been revoked")
    message = error.verify_message or error.reason or "verification failed"
    return Verification("invalid", f"certificate verification failed: {message}")


async def tls_context(ctx: Context, *, verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """The run's shared context for this trust configuration (the trust store is read once).

    Raises TrustError when ``ca_file`` is missing or is not a PEM bundle.
    """
    path = ctx.resolve(ca_file) if ca_file else None
    if path is not None and not path.is_file():
        raise TrustError(f"ca_file {ca_file} does not exist ({path})")
    shown = ca_file or ""
    return await ctx.shared(
        ("readycheck.tls.context", verify, str(path)), lambda: _make_context(verify, path, shown)
    )


def _make_context(verify: bool, ca_file: Path | None, shown: str) -> ssl.SSLContext:
    import ssl

    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file is not None:
        try:
            return ssl.create_default_context(cafile=str(ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise TrustError(
                f"ca_file {shown} cannot be used: not a PEM certificate bundle "
                f"({type(exc).__name__})"
            ) from None
    context = ssl.create_default_context()
    if not context.cert_store_stats().get("x509_ca"):
        import certifi

        context.load_verify_locations(cafile=certifi.where())
    return context


def unverified_context() -> ssl.SSLContext:
    """A context that accepts any certificate: only to read one that failed verification."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class CertificateFacts:
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    names: tuple[str, ...]
    self_signed: bool

    def days_left(self, now: datetime | None = None) -> float:
        now = now or datetime.now(UTC)
        return (self.not_after - now).total_seconds() / 86400.0


def read_certificate(der: bytes) -> CertificateFacts:
    """Subject, issuer, validity and names of a DER certificate."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        alternative = extension.value
        names = tuple(
            [*alternative.get_values_for_type(x509.DNSName)]
            + [str(ip) for ip in alternative.get_values_for_type(x509.IPAddress)]
        )
    except x509.ExtensionNotFound:
        names = ()
    return CertificateFacts(
        subject=cert.subject.rfc4514_string() or "(empty)",
        issuer=cert.issuer.rfc4514_string() or "(empty)",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        names=names,
        self_signed=cert.subject == cert.issuer,
    )
