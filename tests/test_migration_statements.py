"""alembic.safety's reading of SQL, as pure units: the lock each statement takes, the
transaction and lock_timeout it runs under, statements the parser refuses, and which type
changes PostgreSQL makes in place."""

from __future__ import annotations

import pytest

from readycheck.checks.alembic.render import Chunk
from readycheck.checks.alembic.rules import in_place
from readycheck.checks.alembic.statements import Lock, Statement, Table, TableLock, parse


def _one(sql: str) -> Statement:
    (statement,) = parse([Chunk("0001", sql)])
    return statement


@pytest.mark.parametrize(
    ("sql", "locks"),
    [
        ("CREATE INDEX ix ON orders (a)", {"orders": Lock.SHARE}),
        ("CREATE INDEX CONCURRENTLY ix ON orders (a)", {"orders": Lock.SHARE_UPDATE_EXCLUSIVE}),
        ("ALTER TABLE orders ADD COLUMN a text", {"orders": Lock.ACCESS_EXCLUSIVE}),
        (
            "ALTER TABLE orders VALIDATE CONSTRAINT c",
            {"orders": Lock.SHARE_UPDATE_EXCLUSIVE},
        ),
        (
            "ALTER TABLE orders ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES accounts (id)",
            {"orders": Lock.SHARE_ROW_EXCLUSIVE, "accounts": Lock.SHARE_ROW_EXCLUSIVE},
        ),
        (
            "ALTER TABLE orders ADD CONSTRAINT c CHECK (a > 0) NOT VALID",
            {"orders": Lock.ACCESS_EXCLUSIVE},
        ),
        (
            "ALTER TABLE orders ALTER COLUMN a SET STATISTICS 500",
            {"orders": Lock.SHARE_UPDATE_EXCLUSIVE},
        ),
        (
            "CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION f()",
            {"orders": Lock.SHARE_ROW_EXCLUSIVE},
        ),
        ("LOCK TABLE orders IN SHARE MODE", {"orders": Lock.SHARE}),
        ("UPDATE orders SET a = 1", {"orders": Lock.ROW_EXCLUSIVE}),
        ("TRUNCATE orders", {"orders": Lock.ACCESS_EXCLUSIVE}),
        ("DROP TABLE orders", {"orders": Lock.ACCESS_EXCLUSIVE}),
        ("VACUUM FULL orders", {"orders": Lock.ACCESS_EXCLUSIVE}),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY totals", {"totals": Lock.EXCLUSIVE}),
        (
            "CREATE TABLE lines (id bigint, order_id bigint REFERENCES orders (id))",
            {"orders": Lock.SHARE_ROW_EXCLUSIVE},
        ),
        ("COMMENT ON TABLE orders IS 'x'", {}),
    ],
)
def test_each_statement_takes_the_lock_the_postgresql_docs_list(
    sql: str, locks: dict[str, Lock]
) -> None:
    statement = _one(sql)
    assert {str(entry.table): entry.lock for entry in statement.locks} == locks


def test_a_dropped_index_locks_its_table_once_the_catalog_names_it() -> None:
    plain, concurrent = parse([Chunk("0001", "DROP INDEX ix; DROP INDEX CONCURRENTLY iy")])
    tables = {Table("ix"): Table("orders"), Table("iy"): Table("orders")}
    assert plain.with_index_tables(tables).locks == (
        TableLock(Table("orders"), Lock.ACCESS_EXCLUSIVE),
    )
    assert concurrent.with_index_tables(tables).locks == (
        TableLock(Table("orders"), Lock.SHARE_UPDATE_EXCLUSIVE),
    )


def test_pg_locks_mode_names_map_to_locks_and_conflicts_follow_the_table() -> None:
    assert Lock.of_pg_mode("ShareRowExclusiveLock") is Lock.SHARE_ROW_EXCLUSIVE
    assert Lock.ACCESS_EXCLUSIVE.conflicts_with(Lock.ACCESS_SHARE)
    assert Lock.SHARE.conflicts_with(Lock.ROW_EXCLUSIVE)
    assert not Lock.SHARE.conflicts_with(Lock.SHARE)
    assert not Lock.SHARE_UPDATE_EXCLUSIVE.conflicts_with(Lock.ROW_EXCLUSIVE)
    assert Lock.SHARE.blocks == "writes"
    assert Lock.ACCESS_EXCLUSIVE.blocks == "reads and writes"
    assert Lock.SHARE_UPDATE_EXCLUSIVE.blocks == ""


def test_transactions_and_lock_timeouts_are_followed_statement_by_statement() -> None:
    statements = parse(
        [
            Chunk("0001", "BEGIN;"),
            Chunk("0001", "ALTER TABLE a ADD COLUMN x text;"),
            Chunk("0001", "SET LOCAL lock_timeout = '2s';"),
            Chunk("0001", "ALTER TABLE a ADD COLUMN y text;"),
            Chunk("0001", "COMMIT;"),
            Chunk("0002", "ALTER TABLE a ADD COLUMN z text;"),
            Chunk("0002", "SET lock_timeout TO '1s';"),
            Chunk("0002", "BEGIN;"),
            Chunk("0002", "ALTER TABLE a ADD COLUMN w text;"),
            Chunk("0002", "SET lock_timeout = 0;"),
            Chunk("0002", "ALTER TABLE a ADD COLUMN v text;"),
            Chunk("0002", "COMMIT;"),
        ]
    )
    seen = [(s.revision, s.transaction, s.lock_timeout) for s in statements if s.locks]
    assert seen == [
        ("0001", 1, False),
        ("0001", 1, True),
        ("0002", None, False),  # SET LOCAL ended with its transaction
        ("0002", 2, True),
        ("0002", 2, False),
    ]


def test_only_the_statement_the_parser_refuses_is_lost() -> None:
    statements = parse(
        [Chunk("0001", "CREATE INDEX a ON t (x); CREATE INDX b ON t (y); DROP TABLE u;")]
    )
    assert [s.kind for s in statements] == ["CREATE INDEX", "unparsed", "DROP"]
    assert statements[1].sql == "CREATE INDX b ON t (y);"
    assert statements[1].parse_error is not None


def test_a_function_body_with_semicolons_stays_one_statement() -> None:
    statements = parse(
        [
            Chunk(
                "0001",
                "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN NEW.x := 1; RETURN NEW; END "
                "$$ LANGUAGE plpgsql; LOCK TABLE t",
            )
        ]
    )
    assert [s.kind for s in statements] == ["CreateFunction", "LOCK"]


@pytest.mark.parametrize(
    ("old", "old_mod", "new", "new_mods", "expected"),
    [
        ("varchar", 24, "varchar", [50], True),  # varchar(20) -> varchar(50)
        ("varchar", 24, "varchar", [10], False),
        ("varchar", 24, "varchar", [], True),
        ("varchar", 24, "text", [], True),
        ("text", -1, "varchar", [], True),
        ("text", -1, "varchar", [20], False),
        ("numeric", ((10 << 16) | 2) + 4, "numeric", [12, 2], True),
        ("numeric", ((10 << 16) | 2) + 4, "numeric", [12, 3], False),
        ("numeric", ((10 << 16) | 2) + 4, "numeric", [], True),
        ("int4", -1, "int8", [], False),
        ("timestamp", 3, "timestamp", [6], True),
        ("cidr", -1, "inet", [], True),
    ],
)
def test_which_type_changes_postgresql_makes_in_place(
    old: str, old_mod: int, new: str, new_mods: list[int | None], expected: bool
) -> None:
    assert in_place(old, old_mod, new, new_mods) is expected
