"""Projections: live follow, full rebuild into a new generation, reads answer throughout."""

from __future__ import annotations

import asyncio

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_platform.example import TallyTotals, append_tallies, read_totals
from tsunagu_platform.kafka import AiokafkaPublisher, ensure_topics
from tsunagu_platform.projection import Progress, ProjectionManager
from tsunagu_platform.relay import OutboxRelay


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
    await ensure_topics(kafka_bootstrap, [unique_topic], partitions=3)
    await append_tallies(engine, streams=10, events=30, topic=unique_topic)
    await relay_all(engine, kafka_bootstrap)

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
