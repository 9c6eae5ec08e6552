"""Manual items: what only a person can confirm ("rollback rehearsed", "on-call briefed"),
attested with `readycheck attest` and shown beside the machine-checked lines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from readycheck.attestations import DEFAULT_FILE
from readycheck.params import INPUT_FILE, CheckParams
from readycheck.registry import check
from readycheck.results import Outcome

if TYPE_CHECKING:
    from readycheck.context import Context


class ManualParams(CheckParams):
    question: str = Field(
        min_length=1,
        description="What a person must confirm, as a question ('Was the rollback "
        "rehearsed on staging this week?'); the message when it is not attested.",
    )
    attesters: list[str] = Field(
        default_factory=list,
        description="Who may attest it (the names or roles given to `attest --by`); empty: anyone.",
    )
    file: Annotated[str, INPUT_FILE] = Field(
        DEFAULT_FILE,
        description="The attestations file, relative to the profile's directory (commit it).",
    )


@check("manual", params=ManualParams, category="process")
async def manual(p: ManualParams, ctx: Context) -> Outcome:
    """A question a person answers with `readycheck attest`; not attested, it fails."""
    import asyncio

    from readycheck import attestations

    path = ctx.resolve(p.file)
    how = f"readycheck attest PROFILE {ctx.check_id} --by NAME [--note TEXT]"
    try:
        found = await asyncio.to_thread(attestations.read, path)
    except attestations.AttestationFileError as exc:
        return Outcome.errored(str(exc), evidence=[f"question: {p.question}"])
    attestation = found.find(ctx.check_id)
    data = {"question": p.question, "attesters": list(p.attesters)}
    if attestation is None:
        return Outcome.failed(
            f"not attested: {p.question}",
            evidence=[f"question: {p.question}", f"no attestation in {p.file}"],
            remediation=f"Once a person has confirmed it: {how}",
            data={**data, "state": "missing"},
        )
    when = attestation.at.strftime("%Y-%m-%d %H:%M UTC")
    record = {
        **data,
        "by": attestation.by,
        "at": attestation.at.isoformat(),
        "note": attestation.note,
        "release": attestation.release,
    }
    evidence = [f"question: {p.question}", f"attested by {attestation.by} on {when}"]
    if attestation.note:
        evidence.append(f"note: {attestation.note}")
    if p.attesters and attestation.by not in p.attesters:
        return Outcome.failed(
            f"attested by {attestation.by}, who is not one of {', '.join(p.attesters)}",
            evidence=evidence,
            remediation=f"One of {', '.join(p.attesters)} attests it: {how}",
            data={**record, "state": "refused"},
        )
    stale = attestations.staleness(attestation, digest=ctx.profile_digest, release=ctx.release)
    if stale is not None:
        return Outcome.failed(
            f"stale attestation: {stale}",
            evidence=[*evidence, f"stale: {stale}"],
            remediation=f"Confirm it again for this profile and release: {how}",
            data={**record, "state": "stale"},
        )
    return Outcome.passed(
        f"attested by {attestation.by} on {when}"
        + (f": {attestation.note}" if attestation.note else ""),
        evidence=evidence,
        data={**record, "state": "attested"},
    )
