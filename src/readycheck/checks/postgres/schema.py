"""postgres.schema: the tables, views, functions and extensions the release expects exist."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from readycheck.checks.postgres import PostgresParams
from readycheck.checks.postgres.session import with_session
from readycheck.registry import check
from readycheck.results import Outcome

if TYPE_CHECKING:
    from readycheck.checks.postgres.session import Session
    from readycheck.context import Context

# pg_class.relkind values that satisfy each kind of name, and how to call what is found.
_TABLE_KINDS = {"r": "table", "p": "partitioned table", "f": "foreign table"}
_VIEW_KINDS = {"v": "view", "m": "materialized view"}
_RELKIND_NAMES = {
    **_TABLE_KINDS,
    **_VIEW_KINDS,
    "i": "index",
    "I": "partitioned index",
    "S": "sequence",
    "c": "composite type",
    "t": "TOAST table",
}


class SchemaParams(PostgresParams):
    schema_name: str = Field(
        "public",
        alias="schema",
        min_length=1,
        description="The schema the tables, views and functions must be in.",
    )
    tables: list[str] = Field(
        default_factory=list,
        description="Tables that must exist (partitioned and foreign tables count).",
    )
    views: list[str] = Field(
        default_factory=list,
        description="Views that must exist (materialized views count).",
    )
    functions: list[str] = Field(
        default_factory=list,
        description="Functions (or procedures) that must exist, by name, any signature.",
    )
    extensions: list[str] = Field(
        default_factory=list,
        description="Extensions that must be installed in the database (any schema).",
    )

    @model_validator(mode="after")
    def _something_to_check(self) -> SchemaParams:
        if not (self.tables or self.views or self.functions or self.extensions):
            raise ValueError("name at least one of tables, views, functions or extensions")
        return self


@check("postgres.schema", params=SchemaParams, category="database")
async def schema(p: SchemaParams, ctx: Context) -> Outcome:
    """Check that required tables, views, functions and extensions exist."""
    return await with_session(p, ctx, lambda session: _evaluate(p, session))


async def _evaluate(p: SchemaParams, session: Session) -> Outcome:
    missing: list[str] = []
    present: list[str] = []
    namespace = await session.fetch(
        "SELECT oid FROM pg_namespace WHERE nspname = %s", (p.schema_name,)
    )
    relations: dict[str, str] = {}
    defined: set[str] = set()
    if namespace:
        relations = dict(
            await session.fetch(
                "SELECT relname, relkind::text FROM pg_class"
                " WHERE relnamespace = %s AND relname = ANY(%s)",
                (namespace[0][0], [*p.tables, *p.views]),
            )
        )
        if p.functions:
            rows = await session.fetch(
                "SELECT DISTINCT proname FROM pg_proc WHERE pronamespace = %s"
                " AND proname = ANY(%s)",
                (namespace[0][0], p.functions),
            )
            defined = {name for (name,) in rows}
    elif p.tables or p.views or p.functions:
        missing.append(f"schema {p.schema_name} does not exist")
    for kind, names, accepted in (
        ("table", p.tables, _TABLE_KINDS),
        ("view", p.views, _VIEW_KINDS),
    ):
        found = [name for name in names if relations.get(name) in accepted]
        if found:
            present.append(f"{kind}s present: {', '.join(found)}")
        for name in names:
            actual = relations.get(name)
            if actual is None:
                missing.append(f"missing {kind} {p.schema_name}.{name}")
            elif actual not in accepted:
                other = _RELKIND_NAMES.get(actual, f"relation of kind {actual}")
                missing.append(f"{p.schema_name}.{name} is a {other}, not a {kind}")
    found = [name for name in p.functions if name in defined]
    if found:
        present.append(f"functions present: {', '.join(found)}")
    missing.extend(
        f"missing function {p.schema_name}.{name}" for name in p.functions if name not in defined
    )
    if p.extensions:
        versions: dict[str, str] = dict(
            await session.fetch(
                "SELECT extname, extversion FROM pg_extension WHERE extname = ANY(%s)",
                (p.extensions,),
            )
        )
        found = [name for name in p.extensions if name in versions]
        if found:
            present.append(
                "extensions installed: " + ", ".join(f"{n} {versions[n]}" for n in found)
            )
        missing.extend(f"missing extension {name}" for name in p.extensions if name not in versions)

    wanted = len(p.tables) + len(p.views) + len(p.functions) + len(p.extensions)
    absent = [line for line in missing if not line.startswith("schema ")]
    metrics = {"missing": float(len(absent)), "required": float(wanted)}
    if missing:
        return Outcome.failed(
            f"{len(absent)} of {wanted} required objects missing: "
            + "; ".join(line.removeprefix("missing ") for line in missing[:3])
            + ("; ..." if len(missing) > 3 else ""),
            evidence=[*missing, *present],
            metrics=metrics,
            remediation="Run the migrations that create them (or CREATE EXTENSION), or fix "
            "the names in the profile.",
        )
    return Outcome.passed(
        f"all {wanted} required objects exist in {p.schema_name}",
        evidence=present,
        metrics=metrics,
    )
