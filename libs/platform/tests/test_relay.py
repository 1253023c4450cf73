"""Outbox relay: key = stream id, order kept, at-least-once, and no row skipped when commits interleave."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_events import from_kafka
from tsunagu_platform.kafka import AiokafkaPublisher, ensure_topics
from tsunagu_platform.relay import OutboxRelay
from tsunagu_platform.store import EventStore
from tsunagu_platform.tables import outbox

from .helpers import CONTEXT, CapturingPublisher, consume_all, tallies


async def pending(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))) or 0
        )


async def test_relay_publishes_each_stream_in_order_keyed_by_stream_id(
    engine: AsyncEngine, kafka_bootstrap: str, unique_topic: str
) -> None:
    await ensure_topics(kafka_bootstrap, [unique_topic], partitions=3)
    store = EventStore(engine, topic=unique_topic)
    for stream in ("a", "b", "c"):
        await store.append(stream, 0, tallies(5, window=stream), CONTEXT)
    await store.append("a", 5, tallies(5, window="a"), CONTEXT)
    publisher = AiokafkaPublisher(kafka_bootstrap)
    await publisher.start()
    try:
        relay = OutboxRelay(engine, publisher, service="test", batch_size=7)
        while await relay.publish_pending():
            pass
    finally:
        await publisher.stop()
    assert await pending(engine) == 0
    records = await consume_all(kafka_bootstrap, unique_topic, 20)
    assert len(records) == 20
    by_stream: dict[str, list[int]] = {}
    partitions: dict[str, set[int]] = {}
    for record in records:
        envelope = from_kafka(record.headers, record.value).envelope  # type: ignore[attr-defined]
        assert record.key == envelope.streamid.encode()  # type: ignore[attr-defined]
        by_stream.setdefault(envelope.streamid, []).append(envelope.streamversion)
        partitions.setdefault(envelope.streamid, set()).add(record.partition)  # type: ignore[attr-defined]
    assert by_stream == {"a": list(range(1, 11)), "b": [1, 2, 3, 4, 5], "c": [1, 2, 3, 4, 5]}
    assert all(len(p) == 1 for p in partitions.values())


async def test_a_row_committed_late_with_a_lower_id_is_still_published(engine: AsyncEngine) -> None:
    store = EventStore(engine, topic="t")
    first = await store.append("s1", 0, tallies(1), CONTEXT)
    second = await store.append("s2", 0, tallies(1), CONTEXT)
    publisher = CapturingPublisher()
    relay = OutboxRelay(engine, publisher, service="test")
    # Simulate interleaved commits: the row with the higher id is published first...
    async with engine.begin() as conn:
        await conn.execute(outbox.delete().where(outbox.c.event_id == first[0].id))
    assert await relay.publish_pending() == 1
    # ...then the lower id commits late. A position-tracking relay would skip it.
    async with engine.begin() as conn:
        await conn.execute(
            insert(outbox).values(id=0, event_id=first[0].id, topic="t", created_at=datetime.now(UTC), attempts=0)
        )
    assert await relay.publish_pending() == 1
    assert [dict(m.headers)["ce_id"].decode() for m in publisher.sent] == [second[0].id, first[0].id]


async def test_rows_stay_pending_when_publishing_fails(engine: AsyncEngine) -> None:
    class Down:
        async def publish(self, messages: object) -> None:
            raise ConnectionError("broker down")

    store = EventStore(engine, topic="t")
    await store.append("s1", 0, tallies(3), CONTEXT)
    with pytest.raises(ConnectionError):
        await OutboxRelay(engine, Down(), service="test").publish_pending()
    assert await pending(engine) == 3
    capture = CapturingPublisher()
    assert await OutboxRelay(engine, capture, service="test").publish_pending() == 3
    assert await pending(engine) == 0


async def test_headers_carry_no_payload_data(engine: AsyncEngine) -> None:
    store = EventStore(engine, topic="t")
    await store.append("s1", 0, tallies(1, window="secret-window-value"), CONTEXT)
    capture = CapturingPublisher()
    await OutboxRelay(engine, capture, service="test").publish_pending()
    header_text = " ".join(v.decode() for _, v in capture.sent[0].headers)
    assert "secret-window-value" not in header_text
    assert b"secret-window-value" in (capture.sent[0].value or b"")
