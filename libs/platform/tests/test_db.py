"""SQLite runs on the event loop's thread, with one writer connection per engine."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sqlalchemy import text
from tsunagu_platform.db import create_engine, normalise_url


def test_operator_urls_pick_the_in_loop_sqlite_driver_and_keep_an_explicit_one() -> None:
    assert normalise_url("sqlite:///var/intake.db") == "sqlite+tsunagu:///var/intake.db"
    assert normalise_url("sqlite+aiosqlite:///var/intake.db") == "sqlite+aiosqlite:///var/intake.db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"


async def test_statements_run_without_a_driver_thread(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    before = threading.active_count()
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (1)"))
        assert await conn.scalar(text("SELECT count(*) FROM t")) == 1
    assert threading.active_count() == before
    await engine.dispose()


async def test_writers_of_one_process_queue_for_the_single_connection_instead_of_failing(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    order: list[str] = []

    async def writer(name: str) -> None:
        async with engine.begin() as conn:
            order.append(f"{name} in")
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            await asyncio.sleep(0.02)  # hold the transaction across an await
            order.append(f"{name} out")

    await asyncio.gather(writer("a"), writer("b"))

    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM t")) == 2
    await engine.dispose()


async def test_readers_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    writer = create_engine(f"sqlite:///{tmp_path}/t.db")
    reader = create_engine(f"sqlite:///{tmp_path}/t.db", for_writes=False)
    async with writer.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (1)"))
    async with writer.begin() as conn:
        await conn.execute(text("INSERT INTO t VALUES (2)"))
        async with asyncio.timeout(2), reader.connect() as read:
            # Under WAL the reader sees the last commit while the write is open.
            assert await read.scalar(text("SELECT count(*) FROM t")) == 1
    await writer.dispose()
    await reader.dispose()
