"""A projection whose topics were lost and recreated: checkpoints of the old log are not used on the new one.

Each test runs its own broker (the session's is shared) on a fixed port, stops it as a lost broker
would be, and starts a fresh, empty one on the same address; the topic is then refilled from the
store as the runbook does (docs/operations.md, "After losing the broker"): events stored meanwhile
first, then the whole history again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_platform import projection
from tsunagu_platform.example import TallyTotals, append_tallies, read_totals
from tsunagu_platform.kafka import AiokafkaPublisher, ensure_topics
from tsunagu_platform.metrics import PROJECTION_TOPIC_RESETS
from tsunagu_platform.projection import ProjectionManager
from tsunagu_platform.relay import OutboxRelay
from tsunagu_platform.tansu import TansuBroker, free_port
from tsunagu_platform.topic_identity import TopicIdentity, describe_topics

TOPIC = "loss.tally.events"
STREAMS, EVENTS = 10, 30
HISTORY = {f"window-{i}": (EVENTS, EVENTS) for i in range(STREAMS)}


class TopicTotals(TallyTotals):
    topics: Sequence[str] = (TOPIC,)


class Brokers:
    """One broker at a time on one address: `replace` loses the running one and starts an empty one."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_dir = log_dir
        self.current = TansuBroker(self.port, log_dir / "broker-1.log").start()
        self.started = 1

    @property
    def bootstrap(self) -> str:
        return self.current.bootstrap_servers

    def replace(self) -> None:
        self.current.stop()
        self.started += 1
        self.current = TansuBroker(self.port, self.log_dir / f"broker-{self.started}.log").start()


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Brokers]:
    running = Brokers(tmp_path)
    yield running
    running.current.stop()


async def relay_all(engine: AsyncEngine, bootstrap: str) -> None:
    publisher = AiokafkaPublisher(bootstrap)
    await publisher.start()
    try:
        relay = OutboxRelay(engine, publisher, service="test")
        while await relay.publish_pending():
            pass
    finally:
        await publisher.stop()


async def republish(engine: AsyncEngine, bootstrap: str) -> None:
    """`tsunagu-ops republish`, then the relay: the whole history again, in order."""
    from tsunagu_platform.tables import outbox

    async with engine.begin() as conn:
        await conn.execute(update(outbox).values(published_at=None))
    await relay_all(engine, bootstrap)


async def wait_for_totals(
    engine: AsyncEngine, manager: ProjectionManager, expected: dict[str, tuple[int, int]], timeout: float = 60
) -> None:
    seen: dict[str, tuple[int, int]] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        seen = await read_totals(engine, (await manager.tables())["totals"])
        if seen == expected:
            return
        await asyncio.sleep(0.05)
    assert seen == expected  # shows the difference


async def follow_until(engine: AsyncEngine, manager: ProjectionManager, expected: dict[str, tuple[int, int]]) -> None:
    """Run the live follower until the projection shows `expected`, then stop it (its checkpoints stay)."""
    stop = asyncio.Event()
    follower = asyncio.create_task(manager.follow(stop, poll=0.05))
    try:
        await wait_for_totals(engine, manager, expected)
    finally:
        stop.set()
        await asyncio.wait_for(follower, timeout=20)


def resets(reason: str) -> float:
    return float(PROJECTION_TOPIC_RESETS.labels(TopicTotals.name, reason)._value.get())


async def test_topic_ids_come_from_the_broker_and_change_when_the_topic_is_recreated(brokers: Brokers) -> None:
    from aiokafka import AIOKafkaConsumer

    async def identity() -> TopicIdentity:
        consumer = AIOKafkaConsumer(bootstrap_servers=brokers.bootstrap)
        await consumer.start()
        try:
            return (await describe_topics(consumer._client, [TOPIC, "loss.absent.events"]))[TOPIC]
        finally:
            await consumer.stop()

    await ensure_topics(brokers.bootstrap, [TOPIC], partitions=3)
    first = await identity()
    assert first.topic_id is not None
    assert first.partitions == {0, 1, 2}
    assert await identity() == first
    brokers.replace()
    await ensure_topics(brokers.bootstrap, [TOPIC], partitions=3)
    second = await identity()
    assert second.partitions == {0, 1, 2}
    assert second.topic_id is not None
    assert second.topic_id != first.topic_id


async def test_a_projection_restarted_on_a_recreated_topic_counts_every_stored_event_once(
    engine: AsyncEngine, brokers: Brokers
) -> None:
    """The new topic got other partitions (Tansu auto-creates a topic a relay publishes to with 4) and
    holds what was stored during the outage before the history: the old checkpoints skipped part of it."""
    await ensure_topics(brokers.bootstrap, [TOPIC], partitions=3)
    await append_tallies(engine, streams=STREAMS, events=EVENTS, topic=TOPIC)
    await relay_all(engine, brokers.bootstrap)
    manager = ProjectionManager(engine, TopicTotals(), brokers.bootstrap, max_records=50)
    await follow_until(engine, manager, HISTORY)

    brokers.replace()
    await ensure_topics(brokers.bootstrap, [TOPIC], partitions=4)
    await append_tallies(engine, streams=4, events=5, prefix="outage", topic=TOPIC)
    await relay_all(engine, brokers.bootstrap)
    await republish(engine, brokers.bootstrap)
    before = resets("topic_id_changed")

    manager = ProjectionManager(engine, TopicTotals(), brokers.bootstrap, max_records=50)
    await follow_until(engine, manager, {**HISTORY, **{f"outage-{i}": (5, 5) for i in range(4)}})
    assert resets("topic_id_changed") == before + 1


async def test_a_following_projection_notices_the_broker_replaced_under_it(
    engine: AsyncEngine, brokers: Brokers
) -> None:
    """The old log held the history twice (a relay that crashed before marking republishes), so the
    follower's positions lie beyond the new log's history: new events there would be skipped."""
    await ensure_topics(brokers.bootstrap, [TOPIC], partitions=3)
    await append_tallies(engine, streams=STREAMS, events=EVENTS, topic=TOPIC)
    await relay_all(engine, brokers.bootstrap)
    await republish(engine, brokers.bootstrap)
    manager = ProjectionManager(engine, TopicTotals(), brokers.bootstrap, max_records=50)
    stop = asyncio.Event()
    follower = asyncio.create_task(manager.follow(stop, poll=0.05))
    try:
        await wait_for_totals(engine, manager, HISTORY)
        brokers.replace()
        await ensure_topics(brokers.bootstrap, [TOPIC], partitions=3)
        await republish(engine, brokers.bootstrap)
        await append_tallies(engine, streams=6, events=40, prefix="after", topic=TOPIC)
        await relay_all(engine, brokers.bootstrap)
        await wait_for_totals(engine, manager, {**HISTORY, **{f"after-{i}": (40, 40) for i in range(6)}})
    finally:
        stop.set()
        await asyncio.wait_for(follower, timeout=20)


async def test_without_topic_ids_a_checkpoint_beyond_the_log_end_sends_the_topic_back_to_its_start(
    engine: AsyncEngine, brokers: Brokers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker that gives no topic ids (Metadata below v10): the log ending before a checkpoint tells."""

    async def without_ids(client: object, topics: list[str]) -> dict[str, TopicIdentity]:
        return {t: TopicIdentity(None, i.partitions) for t, i in (await describe_topics(client, topics)).items()}

    monkeypatch.setattr(projection, "describe_topics", without_ids, raising=False)
    await ensure_topics(brokers.bootstrap, [TOPIC], partitions=3)
    await append_tallies(engine, streams=STREAMS, events=EVENTS, topic=TOPIC)
    await relay_all(engine, brokers.bootstrap)
    await republish(engine, brokers.bootstrap)  # the old log: the history twice
    manager = ProjectionManager(engine, TopicTotals(), brokers.bootstrap, max_records=50)
    await follow_until(engine, manager, HISTORY)

    brokers.replace()
    await ensure_topics(brokers.bootstrap, [TOPIC], partitions=3)
    await republish(engine, brokers.bootstrap)
    before = resets("log_end_below_checkpoint")
    manager = ProjectionManager(engine, TopicTotals(), brokers.bootstrap, max_records=50)
    stop = asyncio.Event()
    follower = asyncio.create_task(manager.follow(stop, poll=0.05))
    try:
        await wait_for_totals(engine, manager, HISTORY)
        await append_tallies(engine, streams=3, events=7, prefix="after", topic=TOPIC)
        await relay_all(engine, brokers.bootstrap)
        await wait_for_totals(engine, manager, {**HISTORY, **{f"after-{i}": (7, 7) for i in range(3)}})
    finally:
        stop.set()
        await asyncio.wait_for(follower, timeout=20)
    assert resets("log_end_below_checkpoint") == before + 1
