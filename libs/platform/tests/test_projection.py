"""Projections: live follow, full rebuild into a new generation, reads answer throughout."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_platform import projection
from tsunagu_platform.consumer import ReceivedEvent
from tsunagu_platform.example import TallyTotals, append_tallies, read_totals
from tsunagu_platform.kafka import AiokafkaPublisher, end_distance, ensure_topics
from tsunagu_platform.projection import GenerationRunner, Progress, ProjectionManager, Tables
from tsunagu_platform.relay import OutboxRelay
from tsunagu_platform.tables import stream_positions


class TopicTotals(TallyTotals):
    def __init__(self, topic: str) -> None:
        self.topics = (topic,)


async def relay_all(engine: AsyncEngine, bootstrap: str) -> None:
    publisher = AiokafkaPublisher(bootstrap)
    await publisher.start()
    try:
        relay = OutboxRelay(engine, publisher, service="test")
        while await relay.publish_pending():
            pass
    finally:
        await publisher.stop()


async def publish_tallies(engine: AsyncEngine, bootstrap: str, topic: str) -> None:
    """300 events on 3 partitions: 10 streams (windows) of 30 tallies each."""
    await ensure_topics(bootstrap, [topic], partitions=3)
    await append_tallies(engine, streams=10, events=30, topic=topic)
    await relay_all(engine, bootstrap)


async def wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_rebuild_equals_live_and_reads_answer_whole_during_it(
    engine: AsyncEngine, kafka_bootstrap: str, unique_topic: str
) -> None:
    await publish_tallies(engine, kafka_bootstrap, unique_topic)

    manager = ProjectionManager(engine, TopicTotals(unique_topic), kafka_bootstrap, max_records=25)
    stop = asyncio.Event()
    follower = asyncio.create_task(manager.follow(stop, poll=0.05))
    expected = {f"window-{i}": (30, 30) for i in range(10)}

    async def live_totals() -> dict[str, tuple[int, int]]:
        return await read_totals(engine, (await manager.tables())["totals"])

    await wait_for(lambda: _equals(live_totals, expected))

    reads: list[dict[str, tuple[int, int]]] = []
    reports: list[Progress] = []

    def on_progress(p: Progress) -> None:
        reports.append(p)

    async def keep_reading() -> None:
        while True:
            reads.append(await live_totals())
            await asyncio.sleep(0.005)

    reader = asyncio.create_task(keep_reading())
    final = await manager.rebuild(progress=on_progress, report_every=0.0)
    reader.cancel()
    assert final.generation == 2
    assert final.events_done == 300
    assert len(reports) > 1
    assert reports[-1].remaining == 0
    assert reports[0].describe().startswith("example.tally_totals g2:")
    assert reads
    assert all(r == expected for r in reads), "a reader saw a half-built projection"
    assert await manager.active_generation() == 2
    assert await live_totals() == expected

    # The follower moves to the new generation and keeps it up to date.
    await append_tallies(engine, streams=1, events=5, prefix="late", topic=unique_topic)
    await relay_all(engine, kafka_bootstrap)
    await wait_for(lambda: _equals(live_totals, {**expected, "late-0": (5, 5)}))
    stop.set()
    await asyncio.wait_for(follower, timeout=10)

    # A third rebuild drops generation 1 and keeps 2 for readers mid-query.
    await manager.rebuild()
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert "proj_tally_totals_g1" not in names
    assert {"proj_tally_totals_g2", "proj_tally_totals_g3"} <= names


async def _equals(read: object, expected: dict[str, tuple[int, int]]) -> bool:
    return bool(await read() == expected)  # type: ignore[operator]


class FailingOnce(TopicTotals):
    """Fails the first time its `apply` has seen `after` events: a rebuild that crashes midway."""

    def __init__(self, topic: str, after: int) -> None:
        super().__init__(topic)
        self.after = after
        self.seen = 0

    async def apply(self, conn: AsyncConnection, tables: Tables, event: ReceivedEvent) -> None:
        self.seen += 1
        if self.seen == self.after:
            raise RuntimeError("crash")
        await super().apply(conn, tables, event)


async def test_a_rebuild_that_failed_midway_resumes_from_its_last_commit_exactly(
    engine: AsyncEngine, kafka_bootstrap: str, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(projection, "REBUILD_COMMIT_EVENTS", 40)  # several commits in 300 events
    await publish_tallies(engine, kafka_bootstrap, unique_topic)
    manager = ProjectionManager(engine, FailingOnce(unique_topic, after=200), kafka_bootstrap, max_records=25)
    with pytest.raises(RuntimeError, match="crash"):
        await manager.rebuild()
    assert await manager.active_generation() == 1  # nothing half-built was switched in
    runner = manager.runner(2)
    committed = sum((await runner._checkpoints()).values())
    assert 0 < committed < 200
    partial = await read_totals(engine, runner.tables["totals"])
    assert sum(events for _, events in partial.values()) == committed

    await runner.start()
    try:
        while await runner.step_rebuilding(timeout_ms=500) or await runner.lag():
            pass
    finally:
        await runner.stop()
    assert await read_totals(engine, runner.tables["totals"]) == {f"window-{i}": (30, 30) for i in range(10)}
    assert await positions_of(engine, runner) == {f"window-{i}": 30 for i in range(10)}


async def positions_of(engine: AsyncEngine, runner: GenerationRunner) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(stream_positions.c.stream_id, stream_positions.c.version).where(
                stream_positions.c.consumer == runner.sequencer.consumer
            )
        )
        return {s: int(v) for s, v in rows}


async def test_a_rebuilding_runner_counts_the_batch_it_read_ahead_as_not_done_yet(
    engine: AsyncEngine, kafka_bootstrap: str, unique_topic: str
) -> None:
    await publish_tallies(engine, kafka_bootstrap, unique_topic)
    runner = ProjectionManager(engine, TopicTotals(unique_topic), kafka_bootstrap, max_records=25).runner(2)
    await runner.start()
    applied, read_ahead_at_the_end = 0, []
    try:
        while consumed := await runner.step_rebuilding(timeout_ms=500):
            applied += consumed
            assert runner._consumer is not None
            if await end_distance(runner._consumer, runner._assigned) == 0:  # the consumer has read it all
                assert await runner.lag() == 300 - applied
                read_ahead_at_the_end.append(300 - applied)
    finally:
        await runner.stop()
    assert applied == 300
    assert read_ahead_at_the_end[0] > 0  # the last records were read ahead before they were applied
    assert await read_totals(engine, runner.tables["totals"]) == {f"window-{i}": (30, 30) for i in range(10)}


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_a_rebuild_holds_the_collector_off_yet_sweeps_cycles_made_meanwhile_at_each_commit(
    engine: AsyncEngine, kafka_bootstrap: str, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(projection, "REBUILD_COMMIT_EVENTS", 40)  # a commit every other batch of 25
    await publish_tallies(engine, kafka_bootstrap, unique_topic)
    made: list[weakref.ref[Cycle]] = []
    swept, held = [], []

    def other_work_in_the_process(_status: Progress) -> None:
        held.append(not gc.isenabled())
        swept.extend(ref() is None for ref in made[:-2])  # two reports later, a commit has passed
        made.append(weakref.ref(Cycle()))  # garbage only the cyclic collector frees

    assert gc.isenabled()
    manager = ProjectionManager(engine, TopicTotals(unique_topic), kafka_bootstrap, max_records=25)
    await manager.rebuild(progress=other_work_in_the_process, report_every=0)
    assert gc.isenabled()
    assert len(held) > 5
    assert all(held)
    assert len(swept) > 3
    assert all(swept)
