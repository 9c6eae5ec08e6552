"""squawk, the SQL migration linter, run on the rendered statements.

The ``squawk-cli`` wheel (``pip install 'readycheck[migrations]'``) puts the binary next
to the Python interpreter; it is looked up there and on PATH. squawk gets every parsed
statement of the upgrade in one file, transactions included (so its transaction rules
see what Alembic would send), the server's version (``--pg-version``), and the rules
the check excludes; it runs in the scripts folder, so a project's ``.squawk.toml`` applies
as when squawk is run there. Its JSON report is mapped back to statements by line.

squawk missing, crashing, hanging or answering something else than its JSON report is
not the check's failure: the findings then come from readycheck's own rules only, and the
evidence says so.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from readycheck.checks.alembic.programs import execute
from readycheck.checks.alembic.statements import Statement

# squawk rules about what readycheck's own rules also decide, with the live database.
OVERLAPS: dict[str, frozenset[str]] = {
    "require-concurrent-index-creation": frozenset({"index-not-concurrent"}),
    "ban-concurrent-index-creation-in-transaction": frozenset({"concurrently-in-transaction"}),
    "adding-required-field": frozenset({"add-column-not-null"}),
    "adding-field-with-default": frozenset({"add-column-rewrite"}),
    "adding-serial-primary-key-field": frozenset({"add-column-rewrite", "constraint-builds-index"}),
    "changing-column-type": frozenset({"alter-column-type-rewrite"}),
    "constraint-missing-not-valid": frozenset({"constraint-not-valid"}),
    "adding-foreign-key-constraint": frozenset({"constraint-not-valid"}),
    "disallowed-unique-constraint": frozenset({"constraint-builds-index"}),
    "adding-not-nullable-field": frozenset({"set-not-null-scan"}),
    "ban-drop-column": frozenset({"drop-or-rename"}),
    "ban-drop-table": frozenset({"drop-or-rename"}),
    "renaming-column": frozenset({"drop-or-rename"}),
    "renaming-table": frozenset({"drop-or-rename"}),
    "require-timeout-settings": frozenset({"lock-timeout-missing"}),
    "require-lock-timeout": frozenset({"lock-timeout-missing"}),
}


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str
    help: str | None
    statement: Statement


@dataclass(frozen=True)
class SquawkRun:
    ran: bool
    note: str
    """Which linter ran, or why squawk did not, for the evidence."""
    violations: tuple[Violation, ...] = ()


def find(program: str, base_dir: Path) -> Path | None:
    """The squawk binary: a path (relative to the profile's folder), or a name looked up
    next to this Python (where the squawk-cli wheel installs it) and on PATH."""
    if "/" in program:
        path = Path(program).expanduser()
        path = path if path.is_absolute() else base_dir / path
        return path if path.is_file() else None
    beside = Path(sys.executable).parent / program
    if beside.is_file():
        return beside
    found = shutil.which(program)
    return Path(found) if found else None


async def run(
    program: Path,
    statements: Sequence[Statement],
    *,
    server_version: int,
    exclude: Sequence[str],
    cwd: Path,
    timeout_s: float,
) -> SquawkRun:
    """Lint ``statements`` with squawk; see the module docstring."""
    parsed = [s for s in statements if s.node is not None]
    text, starts = _script(parsed)
    with tempfile.TemporaryDirectory(prefix="readycheck-squawk-") as folder:
        script = Path(folder) / "upgrade.sql"
        script.write_text(text)
        argv = [str(program), "--reporter", "json"]
        if server_version:
            argv.append(f"--pg-version={server_version // 10000}.{server_version % 100}")
        if exclude:
            argv.append(f"--exclude={','.join(exclude)}")
        ran = await execute([*argv, str(script)], timeout_s=timeout_s, cwd=folder_of(cwd))
    if isinstance(ran, str):
        return SquawkRun(False, ran)
    if ran.status not in (0, 1):
        said = ran.said()
        return SquawkRun(
            False, f"squawk failed (exit status {ran.status}" + (f": {said}" if said else "") + ")"
        )
    try:
        report = json.loads(ran.out.decode(errors="replace") or "[]")
        violations = tuple(_violations(report, parsed, starts))
    except (ValueError, KeyError, TypeError):
        return SquawkRun(False, "squawk answered something other than its JSON report")
    version = await execute([str(program), "--version"], timeout_s=timeout_s)
    words = version.out.decode(errors="replace").split() if not isinstance(version, str) else []
    name = " ".join(words[:2]) if len(words) >= 2 and words[0] == "squawk" else "squawk"
    return SquawkRun(True, name, violations)


def _script(statements: Sequence[Statement]) -> tuple[str, list[int]]:
    """The statements as one SQL file, and the (0-based) line each starts on."""
    lines: list[str] = []
    starts = []
    for statement in statements:
        starts.append(len(lines))
        lines.extend((statement.sql.rstrip().rstrip(";") + ";").splitlines())
    return "\n".join(lines) + "\n", starts


def _violations(
    report: object, statements: Sequence[Statement], starts: list[int]
) -> list[Violation]:
    import bisect

    if not isinstance(report, list):
        raise ValueError("not a list")
    found = []
    for item in report:
        line = int(item["line"])
        position = bisect.bisect_right(starts, line) - 1
        if not 0 <= position < len(statements):
            continue
        found.append(
            Violation(
                rule=str(item["rule_name"]),
                message=str(item["message"]).strip(),
                help=str(item["help"]).strip() if item.get("help") else None,
                statement=statements[position],
            )
        )
    return found


def folder_of(path: Path) -> Path | None:
    """Where to run squawk: the scripts folder (or the alembic.ini's)."""
    folder = path if path.is_dir() else path.parent
    return folder if folder.is_dir() else None
