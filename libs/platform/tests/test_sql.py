"""The driver fast paths store and return exactly what SQLAlchemy stores and returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, MetaData, String, Table, bindparam, select, text
from sqlalchemy.dialects.postgresql import JSONB
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


async def test_a_bulk_insert_of_many_rows_and_of_one_stores_what_sqlalchemy_stores(database_url: str) -> None:
    engine = create_engine(database_url)
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


serials = Table(
    "serials",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=True),
    Column("name", String(20), nullable=False, unique=True),
    Column("doc", JSON().with_variant(JSONB(), "postgresql"), nullable=True),
)
counters = Table(
    "counters",
    metadata,
    Column("key", String(20), primary_key=True),
    Column("first_seen", String(20), nullable=False),
    Column("count", Integer, nullable=False),
)


async def test_bulk_rows_take_serial_keys_in_the_order_given(database_url: str) -> None:
    engine = create_engine(database_url)
    names = [f"n{(i * 7919) % 1000:03d}" for i in range(1000)]  # not in any sorted order
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await BulkInsert(serials, ("name", "doc")).run(
            conn, [(n, {"n": n} if i % 3 else None) for i, n in enumerate(names)]
        )
    async with engine.connect() as conn:
        stored = (await conn.execute(select(serials.c.name, serials.c.doc).order_by(serials.c.position))).all()
    assert [name for name, _ in stored] == names
    assert [doc for _, doc in stored][:3] == [None, {"n": names[1]}, {"n": names[2]}]
    await engine.dispose()


async def test_an_upsert_naming_a_key_twice_ends_as_if_its_rows_ran_one_by_one(database_url: str) -> None:
    engine = create_engine(database_url)
    upsert = BulkInsert(
        counters, ("key", "first_seen", "count"), on_conflict="update", keys=("key",), update=("count",)
    )
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await upsert.run(conn, [("a", "batch 1", 1), ("b", "batch 1", 1)])
        await upsert.run(conn, [("b", "batch 2", 2), ("c", "batch 2", 1), ("c", "batch 2 again", 2)])
        await upsert.run(conn, [("a", "batch 3", 5)])
    async with engine.connect() as conn:
        stored = (await conn.execute(select(counters).order_by(counters.c.key))).all()
    assert [tuple(row) for row in stored] == [("a", "batch 1", 5), ("b", "batch 1", 2), ("c", "batch 2", 2)]
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
