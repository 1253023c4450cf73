"""The driver fast paths store and return exactly what SQLAlchemy stores and returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, MetaData, String, Table, bindparam, select, text
from tsunagu_platform.db import create_engine
from tsunagu_platform.sql import BulkInsert, DriverQuery

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False),
    Column("at", DateTime(timezone=True), nullable=True),
    Column("tags", JSON, nullable=False),
    Column("flag", Boolean, nullable=False),
)
COLUMNS = ("id", "name", "at", "tags", "flag")


def _rows(start: int, at: datetime) -> list[tuple[object, ...]]:
    later = at + timedelta(microseconds=7)
    # Runs of one timestamp object, another, None, and lists that repeat by value only.
    return [
        (start + i, f"n{i}", at if i < 3 else (later if i < 5 else None), ["a", "b"] if i % 2 else [], i % 3 == 0)
        for i in range(7)
    ]


async def test_a_bulk_insert_of_many_rows_and_of_one_stores_what_sqlalchemy_stores(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    at = datetime(2026, 4, 1, 9, 30, 1, 123456, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(things.insert(), [dict(zip(COLUMNS, row, strict=True)) for row in _rows(0, at)])
        await BulkInsert(things, COLUMNS).run(conn, _rows(100, at))
        await BulkInsert(things, COLUMNS).run(conn, _rows(200, at)[:1])
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT id, name, at, tags, flag FROM things ORDER BY id"))).all()
    by_sqlalchemy = [row[1:] for row in stored if row[0] < 100]
    assert [row[1:] for row in stored if 100 <= row[0] < 200] == by_sqlalchemy
    assert [row[1:] for row in stored if row[0] >= 200] == by_sqlalchemy[:1]
    await engine.dispose()


async def test_a_driver_query_converts_each_column_as_sqlalchemy_does(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    at = datetime(2026, 4, 1, 9, 30, 1, 123456, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await BulkInsert(things, COLUMNS).run(conn, _rows(0, at))
    query = DriverQuery(
        select(things.c.name, things.c.at, things.c.tags, things.c.flag)
        .where(things.c.id >= bindparam("first"))
        .order_by(things.c.id)
    )
    async with engine.connect() as conn:  # no transaction: SQLAlchemy runs it
        expected = await query.rows(conn, {"first": 2})
    async with engine.begin() as conn:  # in one: the driver runs it
        assert await query.rows(conn, {"first": 2}) == expected
    assert expected[0] == ("n2", at.replace(tzinfo=None), [], False)
    assert [row[3] for row in expected] == [False, True, False, False, True]
    await engine.dispose()
