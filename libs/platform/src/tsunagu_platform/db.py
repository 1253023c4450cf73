"""Database engines: SQLite files by default, PostgreSQL when DATABASE_URL says so.

The same SQLAlchemy Core code runs on both. SQLite gets WAL and `BEGIN IMMEDIATE`
so that two writers serialise on the write lock instead of failing late with a
stale snapshot; PostgreSQL relies on unique constraints for the same effect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Integer, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tsunagu_platform import sqlite_inline

# An auto-incrementing 64-bit key that is SQLite's rowid there.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def normalise_url(url: str) -> str:
    """Accept the URLs operators write (postgresql://, sqlite:///) and pick the async drivers.

    Plain `sqlite://` URLs get the in-loop driver (sqlite_inline.py); `sqlite+aiosqlite://`
    stays as written for anyone who wants the threaded driver.
    """
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("postgresql+psycopg://") or url.startswith("postgresql+psycopg2://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return f"sqlite+{sqlite_inline.DRIVER}://" + url.split("://", 1)[1]
    return url


def default_sqlite_url(service: str, var_dir: Path | str = "var") -> str:
    return f"sqlite:///{Path(var_dir) / f'{service}.db'}"


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, *, for_writes: bool = True, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url`; creates the SQLite file's folder when needed.

    On SQLite a writer engine begins every transaction IMMEDIATE (it takes the write
    lock up front); a reader engine (`for_writes=False`) begins deferred, so queries
    never wait for writers under WAL.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if for_writes:
            # One writer connection: writers of this process queue on the pool instead of
            # sleeping in SQLite's busy handler (and, with the in-loop driver, blocking the loop).
            kwargs.setdefault("pool_size", 1)
            kwargs.setdefault("max_overflow", 0)
        engine = create_async_engine(url, connect_args={"timeout": 60}, **kwargs)
        _sqlite_pragmas(engine, "BEGIN IMMEDIATE" if for_writes else "BEGIN")
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
"""What a checkpointed WAL file is truncated to."""

WAL_AUTOCHECKPOINT_PAGES = 1000
"""SQLite's default: a commit that leaves more pages than this in the WAL checkpoints it."""


def _sqlite_pragmas(engine: AsyncEngine, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE below is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # 64 MiB of page cache (the default is 2 MiB): a year of stream positions and read-model
        # indexes stays in memory while a projection rebuilds.
        cursor.execute("PRAGMA cache_size=-65536")
        # A checkpoint leaves the WAL file at its largest size unless told otherwise; a rebuild that
        # deferred its checkpoints (projection.REBUILD_WAL_PAGES) would keep hundreds of MB on disk.
        cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)
