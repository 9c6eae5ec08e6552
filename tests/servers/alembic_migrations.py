"""Alembic script folders for tests, and migrating a test database with Alembic's own API.

``SCRIPTS`` (alembic_scripts/) is a linear history, 0001 -> 0002 -> 0003 (head):

- 0001 creates table ``accounts`` (the demo's own 0001, linked: one table written once);
- 0002 creates table ``orders``, whose foreign key to accounts no index covers yet;
- 0003 creates index ``ix_orders_account_id``, which covers it.

``branched_scripts(dest)`` builds a folder with two heads: SCRIPTS with 0003 replaced by
the two revisions in alembic_branch_heads/, both on top of 0002:

- 0003a creates index ``ix_orders_created_at``;
- 0003b creates table ``audit_log``.

alembic_branch_heads/ is not an Alembic folder by itself (it lacks 0001 and 0002); keeping
only the two heads there means no revision is written twice.

``pending_history(dest, *names)`` builds SCRIPTS plus revisions from alembic_safety/, one
per alembic.safety rule (and a clean one), each written as 0004 on top of 0003: given
several, they are chained in the order given (0004, 0005, ...), so a database migrated
to 0003 has them pending in that order.

Loading a folder imports its revision files, which writes ``__pycache__`` next to them:
a test that points a check at a folder it could disturb should use ``copy_scripts``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from alembic import command
from alembic.config import Config

SCRIPTS = Path(__file__).parent / "alembic_scripts"
BRANCH_HEADS = Path(__file__).parent / "alembic_branch_heads"
SAFETY_REVISIONS = Path(__file__).parent / "alembic_safety"
LINEAR_REVISIONS = ("0001", "0002", "0003")
BRANCHED_HEADS = ("0003a", "0003b")

_NO_CACHE = shutil.ignore_patterns("__pycache__")


def copy_scripts(dest: Path) -> Path:
    """A copy of the linear folder at ``dest``, free to change (add a pending revision...)."""
    shutil.copytree(SCRIPTS, dest, ignore=_NO_CACHE)
    return dest


def branched_scripts(dest: Path) -> Path:
    """A folder at ``dest`` whose history forks after 0002 into heads 0003a and 0003b."""
    copy_scripts(dest)
    for linear_head in (dest / "versions").glob("0003_*.py"):
        linear_head.unlink()
    for head in BRANCH_HEADS.glob("*.py"):
        shutil.copy2(head, dest / "versions" / head.name)
    return dest


def pending_history(dest: Path, *names: str) -> Path:
    """SCRIPTS at ``dest`` plus the alembic_safety/ revisions ``names``, chained after 0003."""
    copy_scripts(dest)
    for number, name in enumerate(names, start=4):
        text = (SAFETY_REVISIONS / f"{name}.py").read_text()
        revision, down = f"{number:04d}", f"{number - 1:04d}"
        text = text.replace('revision = "0004"', f'revision = "{revision}"')
        text = text.replace('down_revision: str | None = "0003"', f'down_revision = "{down}"')
        text = text.replace(
            "Revision ID: 0004\nRevises: 0003", f"Revision ID: {revision}\nRevises: {down}"
        )
        (dest / "versions" / f"{revision}_{name}.py").write_text(text)
    return dest


def alembic_config(dsn: str, script_location: Path = SCRIPTS) -> Config:
    """An in-memory Alembic Config (no alembic.ini) for ``dsn``, a libpq URL."""
    url = dsn
    if url.startswith(("postgresql://", "postgres://")):
        # SQLAlchemy's default PostgreSQL driver is psycopg2; we ship psycopg 3.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    config = Config()
    config.set_main_option("script_location", str(script_location))
    # Config values go through ConfigParser interpolation: double the % of URL escapes.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(dsn: str, revision: str = "heads", *, script_location: Path = SCRIPTS) -> None:
    """``alembic upgrade <revision>`` against the database at ``dsn``."""
    command.upgrade(alembic_config(dsn, script_location), revision)


def downgrade(dsn: str, revision: str, *, script_location: Path = SCRIPTS) -> None:
    """``alembic downgrade <revision>`` against the database at ``dsn``."""
    command.downgrade(alembic_config(dsn, script_location), revision)
