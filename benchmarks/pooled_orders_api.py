"""orders-api (readycheck.demo.service) served through a SQLAlchemy connection pool.

    python benchmarks/pooled_orders_api.py SETTINGS CERT KEY HTTP_FD HTTPS_FD

One worker of the service benchmarks/verdict_stability.py checks: the demo's routes, but
every query goes through a SQLAlchemy engine (QueuePool) the way a FastAPI service's sync
endpoints use one: a thread per request, a pooled connection per query, sessions named
``application_name=orders-api``. Several workers serve the same inherited sockets.

Read from the settings file, beside the demo's own settings:

    DB_POOL_SIZE, DB_MAX_OVERFLOW   the engine's pool_size and max_overflow
    DB_POOL_WARM                    open this many connections at start and keep them idle
                                    (up to pool_size), as a pool does once traffic filled it
    SLOW_ORDERS_MS                  a planted flaw: the orders list query takes this long
                                    (pg_sleep in the same session, holding its connection)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, LiteralString

from readycheck.demo import service

if TYPE_CHECKING:
    from sqlalchemy import Engine

ORDERS_LIST = "SELECT id, status, total_cents FROM orders ORDER BY"


class PooledDatabase(service.Database):
    """Queries through a SQLAlchemy QueuePool, each in a worker thread."""

    def __init__(self, settings: service.Settings) -> None:
        from sqlalchemy import create_engine

        super().__init__(settings.database_url)
        values = settings.values
        self._slow_orders_s = int(values.get("SLOW_ORDERS_MS", "0")) / 1000
        self._engine: Engine = create_engine(
            # SQLAlchemy names the driver in the URL (its default is psycopg2).
            "postgresql+psycopg://" + settings.database_url.split("://", 1)[1],
            pool_size=int(values["DB_POOL_SIZE"]),
            max_overflow=int(values["DB_MAX_OVERFLOW"]),
            pool_timeout=5,
            connect_args={
                "application_name": service.NAME,
                "connect_timeout": 3,
                "options": "-c statement_timeout=2000",
            },
        )

        with contextlib.ExitStack() as held:
            for _ in range(int(values.get("DB_POOL_WARM", "0"))):
                held.enter_context(self._engine.connect())

    async def fetch(
        self, query: LiteralString, params: tuple[object, ...] = ()
    ) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._fetch, query, params)

    def _fetch(self, query: LiteralString, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._engine.connect() as connection:
            if self._slow_orders_s and query.startswith(ORDERS_LIST):
                connection.exec_driver_sql("SELECT pg_sleep(%s)", (self._slow_orders_s,))
            return [tuple(row) for row in connection.exec_driver_sql(query, params)]

    async def close(self) -> None:
        await asyncio.to_thread(self._engine.dispose)


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        sys.stderr.write(f"usage: {Path(__file__).name} SETTINGS CERT KEY HTTP_FD HTTPS_FD\n")
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = service.Settings.read(Path(argv[0]))
    fds = [int(fd) for fd in argv[3:]]
    database = PooledDatabase(settings)
    asyncio.run(service.serve(settings, Path(argv[1]), Path(argv[2]), fds, database))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
