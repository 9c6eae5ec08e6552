"""alembic.head: the database is at the head of the Alembic scripts shipped with this code.

The scripts are read without running env.py (scripts.py); the database side is one
``SELECT`` from the version table in readycheck's safe session rather than Alembic's
``MigrationContext``: the query is the same, and the session is async, cancellable and
shared with the PostgreSQL checks. A migration holding a lock on the version table makes
the ``SELECT`` give up at ``lock_timeout``, and the check names the session holding it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from readycheck.checks.alembic.scripts import (
    SHOWN,
    Scripts,
    ScriptsParams,
    VersionTableLocked,
    current_revisions,
    load_scripts,
)
from readycheck.checks.postgres.session import with_session
from readycheck.registry import check
from readycheck.results import Outcome
from readycheck.units import counted

if TYPE_CHECKING:
    from readycheck.checks.postgres.session import Session
    from readycheck.context import Context


class HeadParams(ScriptsParams):
    allow_multiple_heads: bool = Field(
        False,
        description="Accept scripts with several heads (branches not merged); the database "
        "must then be at every head.",
    )


@check("alembic.head", params=HeadParams, category="database")
async def head(p: HeadParams, ctx: Context) -> Outcome:
    """Check that the database is at the Alembic scripts' head (no migration pending)."""
    scripts = await load_scripts(p, ctx)
    if isinstance(scripts, Outcome):
        return scripts
    return await with_session(p, ctx, lambda session: _compare(p, scripts, session))


async def _compare(p: HeadParams, scripts: Scripts, session: Session) -> Outcome:
    heads_line = (
        f"scripts head{'s' if len(scripts.heads) > 1 else ''}: {scripts.labels(scripts.heads)}"
    )
    try:
        current = await current_revisions(p, session)
    except VersionTableLocked as locked:
        return locked.outcome
    if current is None:
        return Outcome.failed(
            f"no version table {p.version_table_name}: the database has never been migrated "
            f"({len(scripts.order)} revisions pending)",
            evidence=[heads_line, f"pending, in apply order: {scripts.labels(scripts.order)}"],
            metrics={"pending": float(len(scripts.order)), "heads": float(len(scripts.heads))},
            remediation="Run `alembic upgrade head` as part of the deploy, or check "
            "version_table / version_table_schema and the DSN's database.",
        )
    return _verdict(p, scripts, current, heads_line)


def _verdict(p: HeadParams, scripts: Scripts, current: list[str], heads_line: str) -> Outcome:
    known = set(scripts.parents)
    unknown = [revision for revision in current if revision not in known]
    pending = scripts.pending(current)
    database_line = (
        f"database at {scripts.labels(current)}" if current else "database at base (no revision)"
    )
    evidence = [database_line, heads_line]
    metrics = {"heads": float(len(scripts.heads))}
    if not unknown:
        metrics["pending"] = float(len(pending))
    problems = []
    remedies = []
    if unknown:
        problems.append(
            f"the database is at {', '.join(unknown)}, which these scripts do not know: "
            "the database is ahead of this code (or on another branch)"
        )
        remedies.append(
            "deploy the code that has this revision, or downgrade the database with the "
            "code that wrote it"
        )
    if len(scripts.heads) > 1 and not p.allow_multiple_heads:
        problems.append(f"the scripts have {len(scripts.heads)} heads: {', '.join(scripts.heads)}")
        remedies.append("merge the heads (alembic merge heads) before deploying")
    if pending and not unknown:  # from an unknown revision, what is pending is unknown too
        problems.append(
            f"{counted(len(pending), 'revision')} pending: "
            + (scripts.labels(pending) if len(pending) <= 3 else ", ".join(pending[:SHOWN]))
            + (" ..." if len(pending) > SHOWN else "")
        )
        evidence.append(f"pending, in apply order: {scripts.labels(pending)}")
        remedies.append("run `alembic upgrade head` before (or as part of) the deploy")
    if problems:
        text = "; ".join(remedies)
        return Outcome.failed(
            "; ".join(problems),
            evidence=evidence,
            metrics=metrics,
            remediation=text[0].upper() + text[1:] + ".",
        )
    at = ", ".join(current)
    return Outcome.passed(
        f"database at head {at}" if len(current) == 1 else f"database at heads {at}",
        evidence=evidence,
        metrics=metrics,
    )
