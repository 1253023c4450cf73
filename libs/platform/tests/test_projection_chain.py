"""A projection applies only what its streams' hash chains vouch for, as consumers do (issue 14 §6).

A forged event (written straight to a topic, with made-up hashes) is left out and counted; it does
not advance its stream, so the genuine event of that version is applied when it comes.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_events import GENESIS_HASH, EventEnvelope
from tsunagu_platform.consumer import IncomingRecord
from tsunagu_platform.example import TallyTotals, read_totals
from tsunagu_platform.metrics import PROJECTION_CHAIN_BREAKS
from tsunagu_platform.projection import GenerationRunner, ProjectionManager
from tsunagu_platform.store import EventStore

from .helpers import CONTEXT, record_of, tallies


async def chained(engine: AsyncEngine, stream: str, n: int) -> list[EventEnvelope]:
    return await EventStore(engine, topic="t").append(stream, 0, tallies(n, window=stream), CONTEXT)


def forged(genuine: EventEnvelope, prevhash: str | None = "f" * 64, chainhash: str | None = "e" * 64) -> EventEnvelope:
    """The same event as far as the payload goes, with another id and hashes that link to nothing."""
    return genuine.model_copy(update={"id": str(uuid.uuid4()), "prevhash": prevhash, "chainhash": chainhash})


def records(events: list[EventEnvelope], start: int = 0) -> list[IncomingRecord]:
    return [record_of(e, offset=start + i) for i, e in enumerate(events)]


async def runner_for(engine: AsyncEngine) -> GenerationRunner:
    runner = ProjectionManager(engine, TallyTotals(), "unused:9092").runner(1)
    await runner.create_tables()
    return runner


async def totals(runner: GenerationRunner) -> dict[str, tuple[int, int]]:
    return await read_totals(runner.engine, runner.tables["totals"])


def counted_breaks() -> float:
    return float(PROJECTION_CHAIN_BREAKS.labels(TallyTotals.name)._value.get())


async def test_an_event_that_does_not_link_to_its_stream_is_left_out_and_the_genuine_one_applied(
    engine: AsyncEngine,
) -> None:
    events = await chained(engine, "w", 3)
    runner = await runner_for(engine)
    before = counted_breaks()
    await runner.apply_records(records([events[0], events[1], forged(events[2])]))
    assert await totals(runner) == {"w": (2, 2)}
    assert runner.chain_breaks == 1
    assert counted_breaks() == before + 1
    await runner.apply_records(records([events[2]], start=3))
    assert await totals(runner) == {"w": (3, 3)}


async def test_a_new_streams_first_event_must_follow_the_genesis_hash(engine: AsyncEngine) -> None:
    events = await chained(engine, "w", 1)
    runner = await runner_for(engine)
    await runner.apply_records(records([forged(events[0])]))
    assert await totals(runner) == {}
    await runner.apply_records(records([forged(events[0], prevhash=GENESIS_HASH)], start=1))
    assert await totals(runner) == {"w": (1, 1)}, "a first event linking to the genesis hash is applied"
    assert runner.chain_breaks == 1


async def test_an_event_without_hashes_is_left_out(engine: AsyncEngine) -> None:
    events = await chained(engine, "w", 2)
    runner = await runner_for(engine)
    await runner.apply_records(records([events[0], forged(events[1], prevhash=None, chainhash=None)]))
    assert await totals(runner) == {"w": (1, 1)}
    assert runner.chain_breaks == 1


async def test_a_forged_event_held_behind_a_gap_is_not_released_when_the_gap_fills(engine: AsyncEngine) -> None:
    events = await chained(engine, "w", 3)
    runner = await runner_for(engine)
    await runner.apply_records(records([events[0], forged(events[2])]))  # v3 held: v2 missing
    assert await totals(runner) == {"w": (1, 1)}
    await runner.apply_records(records([events[1]], start=2))
    assert await totals(runner) == {"w": (2, 2)}
    assert runner.chain_breaks == 1
    await runner.apply_records(records([events[2]], start=3))
    assert await totals(runner) == {"w": (3, 3)}


async def test_a_runner_resuming_trusts_the_next_event_of_a_stream_applied_before_it(engine: AsyncEngine) -> None:
    """The chain heads live in the runner's memory: after a restart the first event of a stream it had
    applied is taken on its position alone (a rebuild, from the start, checks every one)."""
    events = await chained(engine, "w", 3)
    first = await runner_for(engine)
    await first.apply_records(records(events[:2]))
    resumed = await runner_for(engine)
    await resumed.apply_records(records([events[2]], start=2))
    assert await totals(resumed) == {"w": (3, 3)}
    assert resumed.chain_breaks == 0
