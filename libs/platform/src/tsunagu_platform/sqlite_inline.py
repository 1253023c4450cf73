"""SQLite for asyncio services without a thread hop per statement.

aiosqlite runs every statement, fetch and commit on its own thread and wakes the
event loop for each result: a plain insert costs a dozen thread hand-offs, which
capped a service at a few hundred commands per second on two cores. A SQLite call
on a local file in WAL mode takes microseconds, so this dialect makes the stdlib
driver's calls directly on the event loop's thread, behind SQLAlchemy's asyncio
API (`create_async_engine`, `AsyncConnection`), unchanged for the services.

The price is that a call blocks the loop while it runs. That is bounded because
each process keeps one writer connection (see `db.create_engine`), so writers in
one process queue on the pool, not on SQLite's lock; readers under WAL never wait
for writers; only another *process* holding the write lock (an operator's command)
can make a call wait, for at most the busy timeout.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine.url import URL
from sqlalchemy.util.concurrency import await_

DRIVER = "tsunagu"


class _Cursor(sqlite3.Cursor):
    async def _async_soft_close(self) -> None:
        """SQLAlchemy's asyncio results call this; a stdlib cursor keeps its rows readable as is."""


class _Connection(sqlite3.Connection):
    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)


class SQLiteDialect_inline(SQLiteDialect_pysqlite):  # noqa: N801 - SQLAlchemy's naming for dialects
    """pysqlite, declared asyncio-capable: SQLAlchemy's greenlet runs the calls in place."""

    driver = DRIVER
    is_async = True
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool

    # SQLAlchemy's AsyncConnection insists that a statement awaited something; the driver
    # call itself is synchronous, so each one awaits a coroutine that is already done
    # (a greenlet switch, no trip through the event loop).
    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        cursor.execute(statement, parameters)
        await_(_done())

    def do_executemany(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        cursor.executemany(statement, parameters)
        await_(_done())

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        cursor.execute(statement)
        await_(_done())

    def create_connect_args(self, url: URL) -> Any:
        args, kwargs = super().create_connect_args(url)
        # The pool may close a connection from a garbage collector run on another thread.
        kwargs["check_same_thread"] = False
        kwargs["factory"] = _Connection
        return args, kwargs


async def _done() -> None:
    return None


def register() -> None:
    registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_inline")


register()
