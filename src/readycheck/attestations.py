"""Attestations: what a person confirmed for a `manual` check, kept in a file beside the
profile so that the commit carries it (``.readycheck/attestations.json`` by default).

An attestation holds for one profile and one release: it records the profile's digest
and the release (``signoff.release`` or ``attest --release``), and a run that finds
either changed calls it stale. One attestation is kept per check: attesting again
replaces it, and the repository's history keeps the earlier ones.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from readycheck.errors import UsageError

DEFAULT_FILE = ".readycheck/attestations.json"
SCHEMA_VERSION: Literal[1] = 1
_MAX_BYTES = 4_000_000  # a file of attestations, not a data dump


class Attestation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    check: str
    by: str = Field(min_length=1)
    at: datetime
    note: str | None = None
    profile_digest: str
    release: str | None = None


class AttestationFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    attestations: list[Attestation] = []

    def find(self, check_id: str) -> Attestation | None:
        for attestation in self.attestations:
            if attestation.check == check_id:
                return attestation
        return None

    def put(self, attestation: Attestation) -> None:
        kept = [a for a in self.attestations if a.check != attestation.check]
        self.attestations = sorted([*kept, attestation], key=lambda a: a.check)


class AttestationFileError(Exception):
    """The file exists and cannot be used; the message names it and says why."""


def read(path: Path) -> AttestationFile:
    """The attestations in ``path``; an empty set when the file does not exist yet."""
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise AttestationFileError(f"{path} is larger than an attestations file can be")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AttestationFile()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AttestationFileError(f"{path} cannot be read: {reason}") from None
    try:
        return AttestationFile.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise AttestationFileError(
            f"{path} is not an attestations file written by `readycheck attest` ({first})"
        ) from None


def render(attestations: AttestationFile) -> str:
    return json.dumps(attestations.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def staleness(attestation: Attestation, *, digest: str | None, release: str | None) -> str | None:
    """Why an attestation no longer holds for this profile and release; None when it does."""
    if digest is not None and attestation.profile_digest != digest:
        return (
            f"attested for another version of the profile ({attestation.profile_digest[:19]}, "
            f"now {digest[:19]})"
        )
    if attestation.release != release:
        then = attestation.release or "no release"
        return f"attested for {then}, this run is for {release or 'no release'}"
    return None


def attest(
    path: Path,
    *,
    check: str,
    by: str,
    note: str | None,
    digest: str,
    release: str | None,
    now: datetime,
) -> Attestation:
    """Record an attestation in ``path`` (created with its folder), written whole."""
    from readycheck.errors import OutputError
    from readycheck.report.files import write_atomic

    try:
        found = read(path)
    except AttestationFileError as exc:
        raise UsageError(str(exc)) from None
    attestation = Attestation(
        check=check, by=by, at=now, note=note or None, profile_digest=digest, release=release
    )
    found.put(attestation)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, render(found), option="attestations")
    except (OSError, OutputError) as exc:
        raise UsageError(f"cannot record the attestation in {path}: {exc}") from None
    return attestation
