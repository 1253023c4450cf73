"""Versioned consumers apply only events that link to the last one they applied of their stream (chain.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_events import EventEnvelope
from tsunagu_platform.consumer import DeadLetters, EventConsumer
from tsunagu_platform.db import create_engine
from tsunagu_platform.example import example_metadata, handle_tally, read_totals
from tsunagu_platform.tables import held_events, inbox, metadata

from .helpers import CapturingPublisher, record_of, stored_events


def forged(envelope: EventEnvelope, **update: object) -> EventEnvelope:
    return envelope.model_copy(update={"id": f"forged-{envelope.id}", "prevhash": "e" * 64, **update})


def consumer(engine: AsyncEngine, dlq: CapturingPublisher) -> EventConsumer:
    return EventConsumer("test.totals", engine, handle_tally, DeadLetters(dlq, "test.totals"), retry_delay=0.0)


def reasons(dlq: CapturingPublisher) -> list[str]:
    return [dlq.header(i, "dlq_reason") for i in range(len(dlq.sent))]


async def test_an_event_with_made_up_hashes_is_dead_lettered_and_the_genuine_one_applied(engine: AsyncEngine) -> None:
    events = await stored_events(engine, "w1", 3)
    dlq = CapturingPublisher()
    fake = forged(events[1], data={"window": "w1", "count": 1000, "category": "general"})
    await consumer(engine, dlq).handle_batch([record_of(events[0]), record_of(fake)])
    assert await read_totals(engine) == {"w1": (1, 1)}
    assert reasons(dlq) == ["chain_break"]
    async with engine.connect() as conn:  # its inbox row is gone: a replay of it is judged again
        keys = (await conn.execute(select(inbox.c.event_key))).scalars().all()
    assert all("forged" not in key for key in keys)
    await consumer(engine, dlq).handle_batch([record_of(events[1]), record_of(events[2])])
    assert await read_totals(engine) == {"w1": (3, 3)}


@pytest.mark.parametrize(
    "update", [{"prevhash": "e" * 64}, {"prevhash": None, "chainhash": None}], ids=["not_genesis", "no_hashes"]
)
async def test_the_first_event_of_a_stream_must_follow_the_genesis_hash(
    engine: AsyncEngine, update: dict[str, object]
) -> None:
    (first,) = await stored_events(engine, "w1", 1)
    dlq = CapturingPublisher()
    await consumer(engine, dlq).handle_batch([record_of(first.model_copy(update=update))])
    assert await read_totals(engine) == {}
    assert reasons(dlq) == ["chain_break"]


async def test_a_held_event_that_does_not_link_is_dead_lettered_when_its_gap_fills(engine: AsyncEngine) -> None:
    events = await stored_events(engine, "w1", 3)
    dlq = CapturingPublisher()
    await consumer(engine, dlq).handle_batch([record_of(events[0]), record_of(forged(events[2]))])  # v3 held
    await consumer(engine, dlq).handle_batch([record_of(events[1])])
    assert await read_totals(engine) == {"w1": (2, 2)}
    assert reasons(dlq) == ["chain_break"]
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(held_events)) == 0
    await consumer(engine, dlq).handle_batch([record_of(events[2])])
    assert await read_totals(engine) == {"w1": (3, 3)}


async def test_positions_stored_before_chain_hashes_were_kept_are_upgraded_and_trusted_once(
    database_url: str,
) -> None:
    """A database whose stream_positions has no chainhash column gets it at migration; the next event of a
    stream positioned before then is trusted (nothing to link to), and the one after it must link."""
    from sqlalchemy import text
    from tsunagu_platform.tables import add_missing_columns

    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(example_metadata.create_all)
            await conn.execute(text("DROP TABLE stream_positions"))
            await conn.execute(
                text(
                    "CREATE TABLE stream_positions (consumer VARCHAR(128) NOT NULL, stream_id VARCHAR(128) NOT NULL, "
                    "version INTEGER NOT NULL, PRIMARY KEY (consumer, stream_id))"
                )
            )
            await conn.execute(text("INSERT INTO stream_positions VALUES ('test.totals', 'w1', 1)"))
        async with engine.begin() as conn:
            await conn.run_sync(add_missing_columns)
            await conn.run_sync(add_missing_columns)  # safe to run again
        events = await stored_events(engine, "w1", 3)
        dlq = CapturingPublisher()
        await consumer(engine, dlq).handle_batch([record_of(events[1]), record_of(forged(events[2]))])
        assert reasons(dlq) == ["chain_break"]
        assert await read_totals(engine) == {"w1": (1, 1)}  # v2 applied (v1 was applied before the upgrade)
    finally:
        await engine.dispose()
