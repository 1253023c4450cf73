"""Kafka clients configured one way for every service.

Producer idempotence is a setting because the embedded Tansu broker refuses
InitProducerId; on Apache Kafka (compose, Kubernetes) it is on. Nothing here is
relied on for correctness beyond "a sent record with acks=all is stored": the
outbox and the inbox carry exactly-once effects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class Publisher(Protocol):
    """Sends messages and returns only once the broker has stored every one of them."""

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None: ...


def producer_options(idempotence: bool) -> dict[str, Any]:
    return {
        "acks": "all",
        "enable_idempotence": idempotence,
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 30_000,
    }


class AiokafkaPublisher:
    """Publisher on a plain AIOKafkaProducer: all sends of a batch in flight, then awaited together."""

    def __init__(self, bootstrap_servers: str, *, idempotence: bool = False, client_id: str = "tsunagu") -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, client_id=client_id, **producer_options(idempotence)
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        pending = [
            await self._producer.send(m.topic, value=m.value, key=m.key, headers=m.headers) for m in messages
        ]
        if pending:
            await asyncio.gather(*pending)


class FaststreamPublisher:
    """Publisher through a faststream KafkaBroker, so `TestKafkaBroker` sees what a service publishes."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        for m in messages:
            await self._broker.publish(m.value or b"", m.topic, key=m.key, headers=dict(m.headers))


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    config: dict[str, str] | None = None,
) -> list[str]:
    """Create missing topics; returns the ones created. Safe to run any number of times."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in dict.fromkeys(topics) if t not in existing]
        if not wanted:
            return []
        try:
            await admin.create_topics(
                [
                    NewTopic(t, num_partitions=partitions, replication_factor=replication_factor, topic_configs=config or {})
                    for t in wanted
                ]
            )
        except TopicAlreadyExistsError:
            pass
        return wanted
    finally:
        await admin.close()
