"""The target database's schema as DDL statements, for the trace's throwaway server.

Two sources, never a row of data:

- ``pg_dump --schema-only`` when the binary is found (beside the server binaries the
  trace uses, or on PATH) and is at least the server's major version. It connects with
  the check's DSN, given through libpq's environment variables (so no password shows in
  the process list), read-only (``default_transaction_read_only``), with
  ``statement_timeout``, ``--lock-wait-timeout`` and ``application_name=readycheck``;
- otherwise readycheck's safe session, from the catalogs: schemas, extensions, enum types,
  functions, sequences, tables with their columns, defaults and identities, constraints,
  indexes, views and triggers (``pg_get_*def``). Domains, composite types, partitions and
  policies are not copied; statements the throwaway server refuses are listed in the
  evidence and the trace goes on without them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from readycheck.checks.alembic.programs import execute

if TYPE_CHECKING:
    from readycheck.checks.postgres.session import Session
    from readycheck.params import SecretDsn

_USER = (
    "{n}.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND {n}.nspname NOT LIKE 'pg\\_toast%' AND {n}.nspname NOT LIKE 'pg\\_temp%'"
)
_NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"


@dataclass(frozen=True)
class Schema:
    statements: tuple[str, ...]
    source: str
    """How it was read, for the evidence."""


async def from_catalogs(session: Session) -> Schema:
    """The schema rebuilt from the catalogs; see the module docstring."""
    out: list[str] = []
    user = _USER.format(n="n")
    for (name,) in await session.fetch(
        f"SELECT quote_ident(n.nspname) FROM pg_namespace n WHERE {user}"
        " AND n.nspname <> 'public' ORDER BY n.nspname"
    ):
        out.append(f"CREATE SCHEMA IF NOT EXISTS {name}")
    for name, schema in await session.fetch(
        "SELECT quote_ident(e.extname), quote_ident(n.nspname) FROM pg_extension e"
        " JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql'"
        " ORDER BY e.extname"
    ):
        out.append(f"CREATE EXTENSION IF NOT EXISTS {name} WITH SCHEMA {schema}")
    for name, labels in await session.fetch(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(t.typname),"
        " array_agg(quote_literal(e.enumlabel) ORDER BY e.enumsortorder)"
        " FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid"
        f" JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {user}"
        f" AND {_NOT_EXTENSION.format(oid='t.oid')} GROUP BY 1 ORDER BY 1"
    ):
        out.append(f"CREATE TYPE {name} AS ENUM ({', '.join(labels)})")
    for (definition,) in await session.fetch(
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
        f" JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {user}"
        f" AND p.prokind IN ('f', 'p') AND {_NOT_EXTENSION.format(oid='p.oid')}"
        " ORDER BY p.oid"
    ):
        out.append(str(definition))
    for (name,) in await session.fetch(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c"
        f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user} AND c.relkind = 'S'"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid"
        " AND d.deptype IN ('i', 'e')) ORDER BY 1"
    ):
        out.append(f"CREATE SEQUENCE IF NOT EXISTS {name}")
    out.extend(await _tables(session, user))
    for name, definition in await session.fetch(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname),"
        " 'ADD CONSTRAINT ' || quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid)"
        " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
        f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user}"
        " AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " AND k.contype IN ('p', 'u', 'c', 'x', 'f')"
        " ORDER BY k.contype = 'f', k.oid"
    ):
        out.append(f"ALTER TABLE {name} {definition}")
    for (definition,) in await session.fetch(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {user} AND c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid"
        " AND k.conrelid = i.indrelid) ORDER BY i.indexrelid"
    ):
        out.append(str(definition))
    for name, kind, definition in await session.fetch(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind,"
        " pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {user} AND c.relkind IN ('v', 'm')"
        f" AND {_NOT_EXTENSION.format(oid='c.oid')} ORDER BY c.oid"
    ):
        body = str(definition).strip().rstrip(";")
        if kind == "m":
            out.append(f"CREATE MATERIALIZED VIEW {name} AS {body} WITH NO DATA")
        else:
            out.append(f"CREATE VIEW {name} AS {body}")
    for (definition,) in await session.fetch(
        "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user} AND NOT t.tgisinternal"
        " ORDER BY t.oid"
    ):
        out.append(str(definition))
    return Schema(tuple(out), "from the catalogs")


async def _tables(session: Session, user: str) -> list[str]:
    rows = await session.fetch(
        "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind,"
        " quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0"
        " AND NOT a.attisdropped"
        " LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum"
        f" WHERE {user} AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        f" AND {_NOT_EXTENSION.format(oid='c.oid')}"
        " ORDER BY c.oid, a.attnum"
    )
    tables: dict[int, tuple[str, str, list[str]]] = {}
    for oid, name, kind, column, type_, not_null, default, identity, generated in rows:
        _, _, columns = tables.setdefault(oid, (name, kind, []))
        if column is None:
            continue
        parts = [column, str(type_)]
        if identity:
            when = "ALWAYS" if identity == "a" else "BY DEFAULT"
            parts.append(f"GENERATED {when} AS IDENTITY")
        elif generated == "s" and default is not None:
            parts.append(f"GENERATED ALWAYS AS ({default}) STORED")
        elif default is not None:
            parts.append(f"DEFAULT {default}")
        if not_null:
            parts.append("NOT NULL")
        columns.append(" ".join(parts))
    return [f"CREATE TABLE {name} ({', '.join(columns)})" for name, _, columns in tables.values()]


def find_pg_dump() -> Path | None:
    """pg_dump beside the server binaries the trace starts, or on PATH."""
    from readycheck.demo.postgres import find_postgres_bindir
    from readycheck.demo.processes import ServerStartError

    try:
        beside = find_postgres_bindir() / "pg_dump"
    except ServerStartError:  # no server binaries: PATH may still have a client
        beside = None
    if beside is not None and beside.is_file():
        return beside
    found = shutil.which("pg_dump")
    return Path(found) if found else None


# libpq connection parameters and the environment variables that set them.
_ENVIRONMENT = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "requiressl": "PGREQUIRESSL",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
}


async def from_pg_dump(
    program: Path,
    dsn: SecretDsn,
    *,
    server_version: int,
    statement_ms: int,
    lock_ms: int,
    connect_s: int,
    timeout_s: float,
) -> Schema | str:
    """The schema as pg_dump writes it, split into statements; or why it could not be."""
    from psycopg.conninfo import conninfo_to_dict

    version = await execute([str(program), "--version"], timeout_s=timeout_s)
    if isinstance(version, str):
        return version
    words = version.out.decode(errors="replace").split()
    major = next((int(w.split(".")[0]) for w in words if w[:1].isdigit()), 0)
    if major * 10000 < server_version - server_version % 10000:
        return f"pg_dump {major} is older than the server ({server_version // 10000})"
    params = {key: str(value) for key, value in conninfo_to_dict(dsn.reveal()).items() if value}
    unknown = sorted(set(params) - set(_ENVIRONMENT))
    if unknown:
        return f"the DSN sets {', '.join(unknown)}, which pg_dump cannot be given safely"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env |= {_ENVIRONMENT[key]: value for key, value in params.items()}
    ours = (
        f"-c default_transaction_read_only=on -c statement_timeout={statement_ms}"
        f" -c lock_timeout={lock_ms}"
    )
    env["PGOPTIONS"] = f"{params['options']} {ours}" if params.get("options") else ours
    env["PGAPPNAME"] = "readycheck"
    env["PGCONNECT_TIMEOUT"] = str(max(2, connect_s))
    argv = [
        str(program),
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--no-comments",
        f"--lock-wait-timeout={lock_ms}",
    ]
    ran = await execute(argv, timeout_s=timeout_s, env=env)
    if isinstance(ran, str):
        return ran
    if ran.status != 0:
        return f"pg_dump failed ({ran.said() or f'exit status {ran.status}'})"
    return Schema(_statements(ran.out.decode(errors="replace")), f"by {' '.join(words[:3])}")


def _statements(dump: str) -> tuple[str, ...]:
    """pg_dump's script as statements, without psql's backslash commands."""
    from readycheck.checks.alembic.statements import split_script

    text = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))
    return tuple(split_script(text))
