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


async def test_a_driver_query_answers_as_sqlalchemy_does_and_leaves_converted_columns_to_it(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import bindparam, select
    from tsunagu_platform.sql import DriverQuery
    from tsunagu_platform.tables import metadata, outbox

    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    at = datetime(2026, 4, 1, 9, 30, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            outbox.insert(), [{"event_id": f"e{i}", "topic": "t", "created_at": at, "attempts": i} for i in range(3)]
        )
    plain = DriverQuery(
        select(outbox.c.event_id, outbox.c.attempts).where(outbox.c.topic == bindparam("topic")).order_by(outbox.c.id)
    )
    dated = DriverQuery(select(outbox.c.created_at).where(outbox.c.event_id == bindparam("event_id")))
    async with engine.begin() as conn:  # in a transaction: the driver path
        assert await plain.rows(conn, {"topic": "t"}) == [("e0", 0), ("e1", 1), ("e2", 2)]
        [(created,)] = await dated.rows(conn, {"event_id": "e1"})
        assert created.replace(tzinfo=UTC) == at  # a datetime, as SQLAlchemy converts it, not the stored text
    async with engine.connect() as conn:  # outside one: SQLAlchemy
        assert await plain.rows(conn, {"topic": "t"}) == [("e0", 0), ("e1", 1), ("e2", 2)]
    await engine.dispose()


async def test_bulk_inserts_store_values_exactly_as_sqlalchemy_would(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from tsunagu_platform.sql import BulkInsert
    from tsunagu_platform.tables import metadata, outbox

    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    at = datetime(2026, 4, 1, 9, 30, 1, 123456, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(outbox.insert(), [{"event_id": "by-sqlalchemy", "topic": "t", "created_at": at}])
        await BulkInsert(outbox, ("event_id", "topic", "created_at", "attempts")).run(
            conn, [("by-bulk-insert", "t", at, 0)]
        )
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT event_id, created_at FROM outbox ORDER BY id"))).all()
    assert stored[0][1] == stored[1][1]  # the same text in the file
    await engine.dispose()
