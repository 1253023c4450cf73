"""The backbone end to end: the real broker process, relay and consumer as processes, on SQLite and PostgreSQL.

Each test uses its own topic and consumer group so tests never see each other's events.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_events import to_kafka
from tsunagu_events.topics import dlq_topic
from tsunagu_platform.db import create_engine
from tsunagu_platform.example import count_inbox, migrate, read_totals
from tsunagu_platform.kafka import ensure_topics
from tsunagu_platform.relay import CRASH_HOOK
from tsunagu_platform.store import EventStore
from tsunagu_platform.tables import events, outbox

from .processes import Process, eventually, example, run

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The test's own view of the database: a reader (on SQLite it never waits for the processes' writes)."""
    writer = create_engine(database_url)
    await migrate(writer)
    await writer.dispose()
    engine = create_engine(database_url, for_writes=False)
    yield engine
    await engine.dispose()


@pytest.fixture
async def topic(kafka_bootstrap: str) -> str:
    name = f"it.{uuid.uuid4().hex[:8]}.events"
    await ensure_topics(kafka_bootstrap, [name, dlq_topic(name)], partitions=3)
    return name


def common(database_url: str, bootstrap: str, topic: str) -> list[str]:
    return ["--database-url", database_url, "--bootstrap", bootstrap, "--topic", topic, "--group", f"g.{topic}"]


async def unpublished(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        return int(await conn.scalar(query) or 0)


async def topic_size(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        total = 0
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=300)
            total += sum(len(v) for v in batch.values())
        return total
    finally:
        await consumer.stop()


def events_seen(totals: dict[str, tuple[int, int]]) -> int:
    return sum(events for _total, events in totals.values())


async def test_an_event_appended_and_relayed_is_consumed_once(
    database_url: str, engine: AsyncEngine, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    args = common(database_url, kafka_bootstrap, topic)
    appended = run(example("append", *args, "--streams", "5", "--events", "10"))
    assert appended.returncode == 0, appended.stderr
    relay = Process(example("relay", *args), tmp_path, "relay").start()
    consumer = Process(example("consume", *args), tmp_path, "consumer").start()
    try:
        await eventually(lambda: _seen(engine, 50), what="50 events applied")
        await asyncio.sleep(1.0)  # any duplicate delivery would land now
        assert events_seen(await read_totals(engine)) == 50
        assert await count_inbox(engine, f"g.{topic}") == 50
        assert await unpublished(engine) == 0
    finally:
        assert relay.stop() == 0, relay.output()
        assert consumer.stop() == 0, consumer.output()


async def test_relay_killed_between_publish_and_mark_republishes_and_the_effect_happens_once(
    database_url: str, engine: AsyncEngine, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    args = common(database_url, kafka_bootstrap, topic)
    assert run(example("append", *args, "--streams", "4", "--events", "5")).returncode == 0
    crashing = Process(example("relay", *args), tmp_path, "relay-crash", env={CRASH_HOOK: "1"}).start()
    assert crashing.wait(timeout=60) == -9, crashing.output()
    assert await unpublished(engine) == 20, "killed before marking: every row is still pending"
    assert await topic_size(kafka_bootstrap, topic) == 20, "…but the broker already has them"
    relay = Process(example("relay", *args), tmp_path, "relay").start()
    consumer = Process(example("consume", *args), tmp_path, "consumer").start()
    try:
        await eventually(lambda: _pending_is(engine, 0), what="outbox drained after restart")
        assert await topic_size(kafka_bootstrap, topic) == 40, "the restarted relay published again"
        await eventually(lambda: _seen(engine, 20), what="20 events applied")
        await asyncio.sleep(1.5)
        assert events_seen(await read_totals(engine)) == 20
        assert await count_inbox(engine, f"g.{topic}") == 20
    finally:
        relay.stop()
        consumer.stop()


async def test_a_consumer_killed_mid_batch_loses_nothing(
    database_url: str, engine: AsyncEngine, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    args = common(database_url, kafka_bootstrap, topic)
    assert run(example("append", *args, "--streams", "10", "--events", "20")).returncode == 0
    relay = Process(example("relay", *args), tmp_path, "relay").start()
    slow = Process(example("consume", *args, "--slow-ms", "15", "--batch", "40"), tmp_path, "slow").start()
    try:
        await eventually(lambda: _seen_between(engine, 1, 150), timeout=60, what="a partly consumed topic")
        slow.kill()
        totals = await read_totals(engine)
        assert events_seen(totals) == await count_inbox(engine, f"g.{topic}"), "effects and inbox commit together"
        assert events_seen(totals) < 200
        again = Process(example("consume", *args), tmp_path, "consumer").start()
        try:
            await eventually(lambda: _seen(engine, 200), what="all 200 applied after restart")
            await asyncio.sleep(1.0)
            assert events_seen(await read_totals(engine)) == 200
            assert all(total == 20 for total, _ in (await read_totals(engine)).values())
        finally:
            again.stop()
    finally:
        relay.stop()
        if slow.popen is not None and slow.popen.poll() is None:
            slow.kill()  # the condition above failed before the kill: never leave the process behind


async def test_garbage_unknown_types_and_schema_violations_land_in_the_dlq_and_the_consumer_goes_on(
    database_url: str, engine: AsyncEngine, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    args = common(database_url, kafka_bootstrap, topic)
    consumer = Process(example("consume", *args), tmp_path, "consumer").start()
    try:
        store = EventStore(engine, topic=topic)
        from tsunagu_events.contracts.example import TallyRecorded
        from tsunagu_platform.store import EventContext, NewEvent

        context = EventContext(tenant="131121", source="/tsunagu/131121/example")
        good = await store.append("p-good", 0, [NewEvent(TallyRecorded(window="p", count=1, category="c"))], context)
        template = good[0]
        unknown = template.model_copy(update={"id": "u1", "streamid": "p-u", "type": "tsunagu.example.Nope"})
        invalid = template.model_copy(update={"id": "v1", "streamid": "p-v", "data": {"window": "", "count": -1}})
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"\x00\x9f not json", key=b"x")
            for envelope in (unknown, invalid, template):
                key, headers, value = to_kafka(envelope)
                await producer.send_and_wait(topic, value, key=key, headers=headers)
        finally:
            await producer.stop()
        await eventually(lambda: _seen(engine, 1), what="the valid event after three poison messages")
        from aiokafka import AIOKafkaConsumer

        dlq = AIOKafkaConsumer(dlq_topic(topic), bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
        await dlq.start()
        reasons: list[str] = []
        try:
            for _ in range(30):
                batch = await dlq.getmany(timeout_ms=300)
                for records in batch.values():
                    reasons += [dict(r.headers)["dlq_reason"].decode() for r in records]
                if len(reasons) >= 3:
                    break
        finally:
            await dlq.stop()
        assert sorted(reasons) == ["schema_violation", "undecodable", "unknown_type"]
    finally:
        assert consumer.stop() == 0, consumer.output()


async def test_two_writers_racing_on_one_stream_give_one_success_and_one_conflict(
    database_url: str, engine: AsyncEngine, kafka_bootstrap: str, topic: str
) -> None:
    args = [
        *common(database_url, kafka_bootstrap, topic),
        "--prefix",
        "race",
        "--events",
        "200",
        "--expect-version",
        "0",
    ]
    first = asyncio.create_subprocess_exec(*example("append", *args), stderr=asyncio.subprocess.PIPE)
    second = asyncio.create_subprocess_exec(*example("append", *args), stderr=asyncio.subprocess.PIPE)
    procs = await asyncio.gather(first, second)
    codes = sorted([await p.wait() for p in procs])
    assert codes == [0, 3]
    assert await EventStore(engine, topic=topic).current_version("race") == 200


async def test_an_event_altered_in_the_database_is_named_by_the_hash_chain_check(
    database_url: str, engine: AsyncEngine, kafka_bootstrap: str, topic: str
) -> None:
    args = common(database_url, kafka_bootstrap, topic)
    assert run(example("append", *args, "--streams", "3", "--events", "4")).returncode == 0
    clean = run([sys.executable, "-m", "tsunagu_platform.ops", "verify", "--database-url", database_url])
    assert clean.returncode == 0, clean.stderr
    assert "3 streams checked, 0 broken" in clean.stdout
    async with engine.begin() as conn:
        await conn.execute(
            update(events)
            .where(events.c.stream_id == "window-1", events.c.stream_version == 2)
            .values(envelope=func.replace(events.c.envelope, '"count":1', '"count":7'))
        )
    broken = run([sys.executable, "-m", "tsunagu_platform.ops", "verify", "--database-url", database_url])
    assert broken.returncode == 1
    assert "BROKEN stream=window-1 version=2" in broken.stdout


async def _seen(engine: AsyncEngine, n: int) -> bool:
    return events_seen(await read_totals(engine)) >= n


async def _seen_between(engine: AsyncEngine, low: int, high: int) -> bool:
    return low <= events_seen(await read_totals(engine)) <= high


async def _pending_is(engine: AsyncEngine, n: int) -> bool:
    return await unpublished(engine) == n
