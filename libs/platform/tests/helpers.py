"""Helpers for the backbone's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_events import EventEnvelope, to_kafka
from tsunagu_events.contracts.example import TallyRecorded
from tsunagu_platform.consumer import IncomingRecord
from tsunagu_platform.kafka import OutgoingMessage
from tsunagu_platform.store import EventContext, EventStore, NewEvent

CONTEXT = EventContext(tenant="131121", source="/tsunagu/131121/example")


def tallies(n: int, window: str = "w", count: int = 1) -> list[NewEvent]:
    return [NewEvent(TallyRecorded(window=window, count=count, category="general")) for _ in range(n)]


class CapturingPublisher:
    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        self.sent.extend(messages)

    def header(self, index: int, name: str) -> str:
        return dict(self.sent[index].headers)[name].decode()


def record_of(envelope: object, topic: str = "t", offset: int = 0) -> IncomingRecord:
    key, headers, value = to_kafka(envelope)  # type: ignore[arg-type]
    return IncomingRecord(topic, 0, offset, key, value, tuple(headers))


async def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[object]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[object] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(out) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


async def stored_events(engine: AsyncEngine, stream: str, n: int, window: str | None = None) -> list[EventEnvelope]:
    """n tallies appended to a new stream of the store (topic "t"), as the relay would publish them."""
    return await EventStore(engine, topic="t").append(stream, 0, tallies(n, window=window or stream), CONTEXT)
