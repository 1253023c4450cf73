"""Event store: optimistic concurrency, hash chain, time travel and the outbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_events.contracts.example import TallyRecorded
from tsunagu_platform.db import create_engine
from tsunagu_platform.store import ConcurrencyConflict, DuplicateEvent, EventStore, NewEvent, StreamAppend
from tsunagu_platform.tables import events, metadata, outbox

from .helpers import CONTEXT, tallies


async def count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def test_appended_events_read_back_in_order_with_versions(engine: AsyncEngine) -> None:
    store = EventStore(engine, topic="t")
    await store.append("s1", 0, tallies(3), CONTEXT)
    await store.append("s1", 3, tallies(2, count=5), CONTEXT)
    stored = await store.read("s1")
    assert [e.streamversion for e in stored] == [1, 2, 3, 4, 5]
    assert [e.data["count"] for e in stored] == [1, 1, 1, 5, 5]
    assert stored[0].tenant == "131121"
    assert await store.current_version("s1") == 5


async def test_appending_at_a_stale_version_is_a_conflict_and_writes_nothing(engine: AsyncEngine) -> None:
    store = EventStore(engine, topic="t")
    await store.append("s1", 0, tallies(2), CONTEXT)
    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append("s1", 1, tallies(3), CONTEXT)
    assert caught.value.actual == 2
    assert await count(engine, events) == 2
    assert await count(engine, outbox) == 2


async def test_two_racing_writers_give_one_success_and_one_conflict(database_url: str) -> None:
    # Two engines: two independent connections, as two processes would have.
    first, second = create_engine(database_url), create_engine(database_url)
    async with first.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        results = await asyncio.gather(
            EventStore(first, topic="t").append("race", 0, tallies(50, window="a"), CONTEXT),
            EventStore(second, topic="t").append("race", 0, tallies(50, window="b"), CONTEXT),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["ConcurrencyConflict", "list"]
        stored = await EventStore(first, topic="t").read("race")
        assert len(stored) == 50
        assert len({e.data["window"] for e in stored}) == 1  # one writer's events, whole
        assert await count(first, outbox) == 50
    finally:
        await first.dispose()
        await second.dispose()


async def test_an_event_id_stored_twice_is_refused(engine: AsyncEngine) -> None:
    store = EventStore(engine, topic="t")
    item = NewEvent(TallyRecorded(window="w", count=1, category="c"), id="fixed-id")
    await store.append("s1", 0, [item], CONTEXT)
    with pytest.raises(DuplicateEvent):
        await store.append("s2", 0, [item], CONTEXT)


async def test_outbox_rows_are_written_with_their_events(engine: AsyncEngine) -> None:
    store = EventStore(engine, topic="tsunagu.example.events")
    stored = await store.append("s1", 0, tallies(4), CONTEXT)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(outbox.c.event_id, outbox.c.topic, outbox.c.published_at).order_by(outbox.c.id))
        ).all()
    assert [r[0] for r in rows] == [e.id for e in stored]
    assert {r[1] for r in rows} == {"tsunagu.example.events"}
    assert all(r[2] is None for r in rows)


async def test_read_up_to_a_version_and_as_of_a_moment(engine: AsyncEngine) -> None:
    clock = [datetime(2021, 4, 1, tzinfo=UTC)]
    store = EventStore(engine, topic="t", clock=lambda: clock[0])
    await store.append("s1", 0, tallies(2), CONTEXT)
    clock[0] += timedelta(days=30)
    await store.append("s1", 2, tallies(3), CONTEXT)
    assert len(await store.read("s1", up_to_version=3)) == 3
    as_of = await store.read("s1", as_of=datetime(2021, 4, 15, tzinfo=UTC))
    assert [e.streamversion for e in as_of] == [1, 2]
    assert len(await store.read("s1", as_of=datetime(2021, 3, 1, tzinfo=UTC))) == 0


async def test_hash_chain_verifies_and_names_an_altered_event(engine: AsyncEngine) -> None:
    store = EventStore(engine, topic="t")
    await store.append("s1", 0, tallies(5), CONTEXT)
    await store.append("s2", 0, tallies(2), CONTEXT)
    assert await store.verify_all() == []
    async with engine.begin() as conn:
        text = await conn.scalar(
            select(events.c.envelope).where(events.c.stream_id == "s1", events.c.stream_version == 3)
        )
        await conn.execute(
            update(events)
            .where(events.c.stream_id == "s1", events.c.stream_version == 3)
            .values(envelope=text.replace('"count":1', '"count":9'))
        )
    breaks = await store.verify_all()
    assert [(b.stream_id, b.version) for b in breaks] == [("s1", 3)]
    assert breaks[0].reason == "content does not match its chainhash"


async def test_deleting_an_event_is_named_by_the_chain_check(engine: AsyncEngine) -> None:
    store = EventStore(engine, topic="t")
    await store.append("s1", 0, tallies(4), CONTEXT)
    async with engine.begin() as conn:
        await conn.execute(events.delete().where(events.c.stream_version == 2))
    broken = await store.verify("s1")
    assert broken is not None
    assert broken.version == 3


async def test_a_command_reads_and_appends_on_one_connection(engine: AsyncEngine) -> None:
    store = EventStore(engine, topic="t")
    await store.append("s1", 0, tallies(2), CONTEXT)
    async with engine.begin() as conn:
        loaded = await store.read("s1", conn=conn)
        await store.append("s1", len(loaded), tallies(1), CONTEXT, conn=conn)
    assert [e.streamversion for e in await store.read("s1")] == [1, 2, 3]


async def test_append_many_writes_many_streams_and_refuses_only_those_not_at_their_version(
    engine: AsyncEngine,
) -> None:
    store = EventStore(engine, topic="t")
    await store.append("old", 0, tallies(2), CONTEXT)
    async with engine.begin() as conn:
        results = await store.append_many(
            conn,
            [
                StreamAppend("new-1", 0, tallies(1), CONTEXT),
                StreamAppend("old", 0, tallies(1), CONTEXT),  # taken: at version 2
                StreamAppend("old", 2, tallies(2), CONTEXT),
                StreamAppend("new-1", 1, tallies(1), CONTEXT),  # chains onto the first in this call
            ],
        )
    assert [type(r).__name__ for r in results] == ["list", "ConcurrencyConflict", "list", "list"]
    assert [e.streamversion for e in await store.read("old")] == [1, 2, 3, 4]
    assert [e.streamversion for e in await store.read("new-1")] == [1, 2]
    assert await store.verify("old") is None
    assert await store.verify("new-1") is None
    assert await count(engine, outbox) == 2 + 4


async def test_append_many_stores_what_append_stores(engine: AsyncEngine) -> None:
    store = EventStore(engine, topic="t")
    one = await store.append("a", 0, tallies(2), CONTEXT)
    async with engine.begin() as conn:
        [many] = await store.append_many(conn, [StreamAppend("b", 0, tallies(2), CONTEXT)])
    assert isinstance(many, list)
    strip = {"id", "subject", "streamid", "prevhash", "chainhash", "time", "correlationid"}
    assert [e.model_dump(exclude=strip) for e in many] == [e.model_dump(exclude=strip) for e in one]


async def test_the_stored_text_is_the_envelope_itself_and_its_hash_is_the_canonical_forms(engine: AsyncEngine) -> None:
    import json
    from zoneinfo import ZoneInfo

    from pydantic import ValidationError
    from tsunagu_events import Actor
    from tsunagu_events.chain import chain_hash
    from tsunagu_platform.store import EventContext

    store = EventStore(engine, topic="t")
    context = EventContext(
        tenant="131121",
        source="/tsunagu/131121/example",
        correlation_id="corr-1",
        causation_id="cause-1",
        actor=Actor(agency="ikejiri.community_center", staff="s-1"),
    )
    tally = TallyRecorded(window="窓口", count=2, category="general")
    in_tokyo = datetime(2026, 4, 1, 9, 30, 0, 123456, tzinfo=ZoneInfo("Asia/Tokyo"))
    stored = await store.append(
        "s1",
        0,
        [NewEvent(tally), NewEvent(tally, time=in_tokyo, subject="person-1"), NewEvent(tally)],
        CONTEXT,
    )
    stored += await store.append("s1", 3, [NewEvent(tally)], context)
    async with engine.connect() as conn:
        texts = (await conn.execute(select(events.c.envelope).order_by(events.c.stream_version))).scalars().all()
    previous = "0" * 64
    for envelope, text in zip(stored, texts, strict=True):
        assert json.loads(text) == envelope.to_structured()
        assert envelope.prevhash == previous
        assert envelope.chainhash == chain_hash(previous, envelope)
        previous = envelope.chainhash
    assert stored[1].time == in_tokyo
    assert stored[1].subject == "person-1"
    assert (stored[3].actoragency, stored[3].causationid, stored[3].correlationid) == (
        "ikejiri.community_center",
        "cause-1",
        "corr-1",
    )
    assert await store.verify("s1") is None
    with pytest.raises(ValidationError):  # a time without its offset is refused, as the envelope refuses it
        await store.append("s1", 4, [NewEvent(tally, time=datetime(2026, 4, 1, 9, 30))], CONTEXT)
