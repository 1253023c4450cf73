"""A generation runner's batches without a broker: its decoding, its remembered stream positions, its bulk inserts."""

from __future__ import annotations

import asyncio
import gc
import json

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events import EventEnvelope, binding
from tsunagu_platform.consumer import IncomingRecord, ReceivedEvent, Rejected, decode_record
from tsunagu_platform.db import WAL_AUTOCHECKPOINT_PAGES, create_engine
from tsunagu_platform.example import TallyTotals, read_totals
from tsunagu_platform.projection import REBUILD_WAL_PAGES, GenerationRunner, ProjectionManager, Tables
from tsunagu_platform.sql import BulkInsert
from tsunagu_platform.store import EventStore
from tsunagu_platform.tables import held_events, projection_checkpoints, stream_positions

from .helpers import CONTEXT, record_of, tallies


async def envelopes(engine: AsyncEngine, stream: str, n: int, window: str) -> list[EventEnvelope]:
    return await EventStore(engine, topic="t").append(stream, 0, tallies(n, window=window), CONTEXT)


def records(events: list[EventEnvelope], start: int = 0) -> list[IncomingRecord]:
    return [record_of(e, offset=start + i) for i, e in enumerate(events)]


async def runner_for(engine: AsyncEngine, generation: int = 1) -> tuple[ProjectionManager, GenerationRunner]:
    manager = ProjectionManager(engine, TallyTotals(), "unused:9092")
    runner = manager.runner(generation)
    await runner.create_tables()
    return manager, runner


async def totals(runner: GenerationRunner) -> dict[str, tuple[int, int]]:
    return await read_totals(runner.engine, runner.tables["totals"])


async def test_the_fast_decoding_path_accepts_and_rejects_exactly_as_the_careful_one(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = records(await envelopes(engine, "s1", 2, "w"))
    key, headers, value = good[0].key, good[0].headers, good[0].value
    assert value is not None
    structured = json.dumps({**json.loads(value), "extra": 1}).encode()
    cases = [
        *good,
        IncomingRecord("t", 0, 5, key, b"{not json", headers),
        IncomingRecord("t", 0, 6, key, b"[1, 2]", headers),
        IncomingRecord("t", 0, 7, key, None, headers),
        IncomingRecord("t", 0, 8, key, structured, headers),  # violates the payload schema
        IncomingRecord(
            "t", 0, 9, key, value, tuple((k, b"tsunagu.example.Nope" if k == "ce_type" else v) for k, v in headers)
        ),
        IncomingRecord("t", 0, 10, key, value, tuple((k, b"x" if k == "ce_streamversion" else v) for k, v in headers)),
        IncomingRecord("t", 0, 11, key, value, (*headers, ("traceparent", b"00-abc"))),
        IncomingRecord("t", 0, 12, key, value, tuple((k.upper(), v) for k, v in headers)),
    ]
    fast_results = [decode_record(record) for record in cases]
    monkeypatch.setattr(binding, "_from_kafka_fast", lambda _headers, _value: None)
    for record, fast in zip(cases, fast_results, strict=True):
        careful = decode_record(record)
        assert type(fast) is type(careful)
        if isinstance(fast, ReceivedEvent):
            assert isinstance(careful, ReceivedEvent)
            assert fast.envelope == careful.envelope
            assert fast.payload == careful.payload
        else:
            assert isinstance(fast, Rejected)
            assert isinstance(careful, Rejected)
            assert (fast.reason, fast.detail) == (careful.reason, careful.detail)
    assert [isinstance(r, ReceivedEvent) for r in fast_results[:2]] == [True, True]


async def test_runner_drops_a_republished_event_it_applied_in_an_earlier_batch(engine: AsyncEngine) -> None:
    events = await envelopes(engine, "s1", 3, "w")
    _manager, runner = await runner_for(engine)
    await runner.apply_records(records(events))
    # The relay published the second event again, at a later offset.
    await runner.apply_records(records([events[1]], start=3))
    assert await totals(runner) == {"w": (3, 3)}
    assert runner.sequencer.complete is True
    assert runner.sequencer.known == {"s1": 3}


async def test_runner_resuming_a_generation_reads_the_stored_positions(engine: AsyncEngine) -> None:
    events = await envelopes(engine, "s1", 3, "w")
    _manager, first = await runner_for(engine)
    await first.apply_records(records(events[:2]))
    _manager, resumed = await runner_for(engine)
    await resumed.apply_records(records(events, start=2))  # the first two again, then the third
    assert await totals(resumed) == {"w": (3, 3)}
    assert resumed.sequencer.complete is False
    async with engine.connect() as conn:
        stored = (await conn.execute(select(stream_positions.c.version))).scalars().all()
    assert stored == [3]


async def test_runner_forgets_what_it_remembers_when_another_writer_advanced_the_generation(
    engine: AsyncEngine,
) -> None:
    events = await envelopes(engine, "s1", 4, "w")
    _manager, one = await runner_for(engine)
    _manager, other = await runner_for(engine)
    await one.apply_records(records(events[:1]))
    await other.apply_records(records(events[:3]))  # reads one's position, applies versions 2 and 3
    await one.apply_records(records(events[1:], start=1))  # must not apply 2 and 3 again
    assert await totals(one) == {"w": (4, 4)}


async def test_runner_holds_a_gap_and_applies_it_once_filled(engine: AsyncEngine) -> None:
    events = await envelopes(engine, "s1", 3, "w")
    _manager, runner = await runner_for(engine)
    await runner.apply_records(records([events[0], events[2]]))
    assert await totals(runner) == {"w": (1, 1)}
    await runner.apply_records(records([events[1]], start=2))
    assert await totals(runner) == {"w": (3, 3)}
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(held_events)) == 0


async def test_failed_batch_leaves_no_remembered_positions_behind(engine: AsyncEngine) -> None:
    events = await envelopes(engine, "s1", 2, "w")
    _manager, runner = await runner_for(engine)
    tables = runner.tables
    runner.tables = {}  # the projection's apply fails on the missing table
    with pytest.raises(KeyError):
        await runner.apply_records(records(events))
    assert runner.sequencer.known == {}
    runner.tables = tables
    await runner.apply_records(records(events))
    assert await totals(runner) == {"w": (2, 2)}


async def stored_checkpoints(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(projection_checkpoints.c.next_offset))).scalars())


async def test_batches_kept_open_commit_together_with_their_checkpoints(engine: AsyncEngine) -> None:
    events = await envelopes(engine, "s1", 3, "w")
    _manager, runner = await runner_for(engine)
    await runner.apply_records(records(events[:2]), keep_open=True)
    await runner.apply_records(records(events[2:], start=2), keep_open=True)
    assert runner.events_done == 0  # counted once committed
    await runner.commit()
    assert runner.events_done == 3
    assert await totals(runner) == {"w": (3, 3)}
    assert await stored_checkpoints(engine) == [3]


async def checkpoint_threshold(conn: AsyncConnection) -> int:
    return int((await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar_one())


async def test_a_rebuild_defers_sqlite_checkpoints_only_while_its_transaction_is_open(engine: AsyncEngine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("WAL checkpoints are SQLite's")
    events = await envelopes(engine, "s1", 4, "w")
    _manager, runner = await runner_for(engine)
    await runner.apply_records(records(events[:1]))  # following the live generation: SQLite's own threshold
    async with engine.connect() as conn:
        assert await checkpoint_threshold(conn) == WAL_AUTOCHECKPOINT_PAGES
    await runner.apply_records(records(events[1:2], start=1), keep_open=True)
    assert runner._open is not None
    assert await checkpoint_threshold(runner._open.conn) == REBUILD_WAL_PAGES
    await runner.commit()
    async with engine.connect() as conn:  # the pool's one writer connection, handed back as it was
        assert await checkpoint_threshold(conn) == WAL_AUTOCHECKPOINT_PAGES
    await runner.apply_records(records(events[2:3], start=2), keep_open=True)
    await runner.rollback()
    async with engine.connect() as conn:
        assert await checkpoint_threshold(conn) == WAL_AUTOCHECKPOINT_PAGES
    assert await totals(runner) == {"w": (2, 2)}


async def test_readers_learn_the_live_tables_while_a_rebuild_holds_the_writer(
    engine: AsyncEngine, database_url: str
) -> None:
    """On SQLite a rebuild's open transaction holds the process's only writer connection for up to a
    second at a time; asking which tables are live goes through the reader (here it would wait forever)."""
    reader = create_engine(database_url, for_writes=False)
    manager = ProjectionManager(engine, TallyTotals(), "unused:9092", reader=reader)
    rebuild = manager.runner(2)
    try:
        events = await envelopes(engine, "s1", 2, "w")
        live = {name: table.name for name, table in (await manager.tables()).items()}
        await rebuild.create_tables()
        await rebuild.apply_records(records(events), keep_open=True)
        during = await asyncio.wait_for(manager.tables(), timeout=30)
        assert {name: table.name for name, table in during.items()} == live
        await rebuild.commit()
        assert await totals(rebuild) == {"w": (2, 2)}
    finally:
        await rebuild.rollback()
        await reader.dispose()


async def test_a_failed_batch_rolls_back_every_batch_of_its_open_transaction(engine: AsyncEngine) -> None:
    events = await envelopes(engine, "s1", 4, "w")
    _manager, runner = await runner_for(engine)
    await runner.apply_records(records(events[:1]))  # committed
    await runner.apply_records(records(events[1:3], start=1), keep_open=True)
    tables = runner.tables
    runner.tables = {}  # the projection's apply fails on the missing table
    with pytest.raises(KeyError):
        await runner.apply_records(records(events[3:], start=3), keep_open=True)
    runner.tables = tables
    assert runner.sequencer.known == {}
    assert await totals(runner) == {"w": (1, 1)}
    assert await stored_checkpoints(engine) == [1]
    # The runner carries on from what was committed, as a new one would.
    await runner.apply_records(records(events[1:], start=1))
    assert await totals(runner) == {"w": (4, 4)}


async def test_a_crash_with_batches_open_loses_nothing_and_counts_nothing_twice(engine: AsyncEngine) -> None:
    first = await envelopes(engine, "s1", 3, "w")
    second = await envelopes(engine, "s2", 2, "v")
    log = records([first[0], second[0], first[1], first[2], second[1]])
    _manager, crashed = await runner_for(engine)
    await crashed.apply_records(log[:2], keep_open=True)
    await crashed.commit()
    await crashed.apply_records(log[2:4], keep_open=True)
    await crashed.stop()  # the process dies: its open transaction never commits
    assert await stored_checkpoints(engine) == [2]
    _manager, resumed = await runner_for(engine)
    await resumed.apply_records(log[2:], keep_open=True)  # from the checkpoint on
    await resumed.apply_records(records([first[0], first[1]], start=5))  # republished by the relay
    assert await totals(resumed) == {"v": (2, 2), "w": (3, 3)}
    assert await stored_checkpoints(engine) == [7]


async def test_a_batch_pauses_the_cyclic_collector_and_leaves_it_as_it_found_it(engine: AsyncEngine) -> None:
    events = await envelopes(engine, "s1", 3, "w")
    _manager, runner = await runner_for(engine)
    seen: list[bool] = []
    projection = runner.projection
    apply = projection.apply

    async def watching(conn: AsyncConnection, tables: Tables, event: ReceivedEvent) -> None:
        seen.append(gc.isenabled())
        await apply(conn, tables, event)

    runner.batched = False
    projection.apply = watching  # type: ignore[method-assign]
    assert gc.isenabled()
    await runner.apply_records(records(events[:1]))
    assert gc.isenabled()
    gc.disable()
    try:
        await runner.apply_records(records(events[1:2], start=1))
        assert not gc.isenabled()  # someone else's choice, kept
    finally:
        gc.enable()
    tables = runner.tables
    runner.tables = {}  # a failing batch restores it too
    with pytest.raises(KeyError):
        await runner.apply_records(records(events[2:], start=2))
    assert gc.isenabled()
    runner.tables = tables
    assert seen == [False, False, False]


async def test_bulk_insert_writes_tuples_and_honours_conflicts(engine: AsyncEngine) -> None:
    table = Table(
        "bulk_probe", MetaData(), Column("k", String(16), primary_key=True), Column("v", Integer, nullable=False)
    )
    async with engine.begin() as conn:
        await conn.run_sync(table.create)
        await BulkInsert(table, ("k", "v")).run(conn, [("a", 1), ("b", 2)])
        await BulkInsert(table, ("k", "v"), on_conflict="ignore").run(conn, [("a", 9), ("c", 3)])
        await BulkInsert(table, ("k", "v"), on_conflict="update", keys=("k",), update=("v",)).run(conn, [("b", 20)])
        rows = (await conn.execute(select(table.c.k, table.c.v).order_by(table.c.k))).all()
    assert [tuple(r) for r in rows] == [("a", 1), ("b", 20), ("c", 3)]


def test_bulk_insert_refuses_columns_out_of_table_order() -> None:
    table = Table("bulk_order", MetaData(), Column("k", String(16), primary_key=True), Column("v", Integer))
    with pytest.raises(ValueError, match="table order"):
        BulkInsert(table, ("v", "k")).sql(sqlite.dialect())
