"""Manual items: a question only a person can answer, attested with `readycheck attest`,
stale when the profile or the release changes, blocking with its question when not."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult

Cli = Callable[..., CliResult]

PROFILE = """
name: shop
signoff: {{release: "${{env:RELEASE_VERSION:-unversioned}}"}}
checks:
  - id: rollback-rehearsed
    type: manual
    severity: critical
    with:
      question: Was the rollback rehearsed on staging this week?
      attesters: [release-manager, on-call-lead]
  - id: docs-updated
    type: manual
    severity: high
    blocks: false
    with: {{question: Are the runbooks updated?}}
  - {{id: db, type: test.sleep}}
{extra}
"""


@pytest.fixture
def profile(write_profile: Callable[..., Path]) -> Path:
    return write_profile(PROFILE.format(extra=""))


def _checks(out: Path) -> dict[str, dict]:
    return {check["id"]: check for check in json.loads(out.read_text())["checks"]}


def test_an_unattested_blocking_item_blocks_with_its_question(
    cli: Cli, profile: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    result = cli("run", profile, "--json", out)
    assert result.exit_code == 1, result.output
    checks = _checks(out)
    item = checks["rollback-rehearsed"]
    assert item["blocking"] is True
    assert item["summary"] == "not attested: Was the rollback rehearsed on staging this week?"
    assert "readycheck attest PROFILE rollback-rehearsed --by NAME" in item["remediation"]
    assert item["data"]["state"] == "missing"
    assert checks["docs-updated"]["blocking"] is False  # blocks: false: shown, not blocking


def test_an_attested_item_passes_with_who_when_and_the_note(
    cli: Cli, profile: Path, tmp_path: Path
) -> None:
    attested = cli(
        "attest",
        profile,
        "rollback-rehearsed",
        "--by",
        "release-manager",
        "--note",
        "rehearsed on staging, ticket OPS-12",
    )
    assert attested.exit_code == 0, attested.output
    record = json.loads((tmp_path / ".readycheck" / "attestations.json").read_text())
    [entry] = record["attestations"]
    assert (entry["check"], entry["by"], entry["release"]) == (
        "rollback-rehearsed",
        "release-manager",
        "unversioned",
    )
    out = tmp_path / "r.json"
    result = cli("run", profile, "--json", out)
    assert result.exit_code == 0, result.output
    item = _checks(out)["rollback-rehearsed"]
    assert item["status"] == "PASS"
    assert item["summary"].startswith("attested by release-manager on ")
    assert item["summary"].endswith(": rehearsed on staging, ticket OPS-12")
    assert item["data"]["state"] == "attested"


def test_an_attestation_for_an_older_profile_is_stale(
    cli: Cli, profile: Path, tmp_path: Path
) -> None:
    assert cli("attest", profile, "rollback-rehearsed", "--by", "on-call-lead").exit_code == 0
    profile.write_text(PROFILE.format(extra="  - {id: cache, type: test.sleep}\n"))
    out = tmp_path / "r.json"
    result = cli("run", profile, "--json", out)
    assert result.exit_code == 1
    item = _checks(out)["rollback-rehearsed"]
    assert item["summary"].startswith(
        "stale attestation: attested for another version of the profile"
    )
    assert item["data"]["state"] == "stale"


def test_an_attestation_for_another_release_is_stale(
    cli: Cli, profile: Path, tmp_path: Path
) -> None:
    env = {"RELEASE_VERSION": "2.4.0"}
    assert (
        cli("attest", profile, "rollback-rehearsed", "--by", "on-call-lead", env=env).exit_code == 0
    )
    out = tmp_path / "r.json"
    assert cli("run", profile, "--json", out, env=env).exit_code == 0
    later = cli("run", profile, "--json", out, env={"RELEASE_VERSION": "2.5.0"})
    assert later.exit_code == 1
    assert _checks(out)["rollback-rehearsed"]["summary"] == (
        "stale attestation: attested for 2.4.0, this run is for 2.5.0"
    )


def test_attest_release_names_the_release_it_holds_for(
    cli: Cli, profile: Path, tmp_path: Path
) -> None:
    attested = cli(
        "attest", profile, "rollback-rehearsed", "--by", "on-call-lead", "--release", "2.6.0"
    )
    assert attested.exit_code == 0, attested.output
    assert "for 2.6.0 in " in attested.stdout
    out = tmp_path / "r.json"
    assert cli("run", profile, "--json", out, env={"RELEASE_VERSION": "2.6.0"}).exit_code == 0
    assert _checks(out)["rollback-rehearsed"]["data"]["release"] == "2.6.0"
    assert cli("run", profile, "--json", out).exit_code == 1
    assert _checks(out)["rollback-rehearsed"]["summary"] == (
        "stale attestation: attested for 2.6.0, this run is for unversioned"
    )


@pytest.mark.parametrize(
    ("check_id", "by", "message"),
    [
        (
            "db",
            "release-manager",
            "'db' is not a manual item (manual items: rollback-rehearsed, docs-updated)",
        ),
        ("dbb", "release-manager", "'dbb' is not a check of the profile"),
        (
            "rollback-rehearsed",
            "intern",
            "may be attested by release-manager, on-call-lead, not 'intern'",
        ),
    ],
)
def test_attest_refuses_what_it_cannot_record(
    check_id: str, by: str, message: str, cli: Cli, profile: Path, tmp_path: Path
) -> None:
    result = cli("attest", profile, check_id, "--by", by)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / ".readycheck").exists()


def test_a_damaged_attestations_file_is_an_error_naming_it(
    cli: Cli, profile: Path, tmp_path: Path
) -> None:
    (tmp_path / ".readycheck").mkdir()
    (tmp_path / ".readycheck" / "attestations.json").write_text("{not json")
    out = tmp_path / "r.json"
    cli("run", profile, "--json", out)
    item = _checks(out)["rollback-rehearsed"]
    assert item["status"] == "ERROR"
    assert (
        "attestations.json is not an attestations file written by `readycheck attest`"
        in item["summary"]
    )
    refused = cli("attest", profile, "rollback-rehearsed", "--by", "on-call-lead")
    assert refused.exit_code == 2
    assert (tmp_path / ".readycheck" / "attestations.json").read_text() == "{not json"


def test_the_attestations_file_cannot_be_an_output(cli: Cli, profile: Path, tmp_path: Path) -> None:
    target = tmp_path / ".readycheck" / "attestations.json"
    target.parent.mkdir()
    target.write_text('{"schema_version": 1, "attestations": []}')
    result = cli("run", profile, "--json", target)
    assert result.exit_code == 2
    assert "a file check 'rollback-rehearsed' reads" in result.stderr


def test_the_report_lists_manual_items_in_their_own_section(
    cli: Cli, profile: Path, tmp_path: Path
) -> None:
    from markdown_it import MarkdownIt

    assert (
        cli(
            "attest", profile, "rollback-rehearsed", "--by", "on-call-lead", "--note", "OPS-12"
        ).exit_code
        == 0
    )
    report = tmp_path / "r.md"
    cli("run", profile, "--report", report)
    html = MarkdownIt("commonmark").enable("table").render(report.read_text())
    section = html.split("<h2>Confirmed by people</h2>", 1)[1].split("<h2>", 1)[0]
    rows = section.split("<tr>")[2:]
    assert len(rows) == 2
    assert "Was the rollback rehearsed on staging this week?" in rows[0]
    assert "<td>attested</td>" in rows[0] and "on-call-lead" in rows[0] and "OPS-12" in rows[0]
    assert "Are the runbooks updated?" in rows[1] and "<td>not attested</td>" in rows[1]
