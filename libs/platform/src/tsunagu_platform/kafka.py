"""Kafka clients configured one way for every service.

Producer idempotence is a setting because the embedded Tansu broker refuses
InitProducerId; on Apache Kafka (compose, Kubernetes) it is on. Nothing here is
relied on for correctness beyond "a sent record with acks=all is stored": the
outbox and the inbox carry exactly-once effects.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from tsunagu_events.topics import retention_ms


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class Publisher(Protocol):
    """Sends messages and returns only once the broker has stored every one of them."""

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None: ...


def faststream_broker(bootstrap_servers: str, *, idempotence: bool = False) -> Any:
    """A faststream KafkaBroker whose per-message "Received/Processed" lines are DEBUG, not INFO:
    at thousands of events a second they would drown the structured logs; its consumer groups join
    together (`_ConcurrentlyStartedBroker`)."""
    import logging

    # faststream takes a string as one host: "a:9092,b:9092" (compose's cluster) must be a list.
    return _broker_class()(
        [server.strip() for server in bootstrap_servers.split(",") if server.strip()],
        enable_idempotence=idempotence,
        acks="all",
        max_request_size=MAX_REQUEST_BYTES,
        log_level=logging.DEBUG,
    )


@functools.cache
def _broker_class() -> Any:
    from faststream.kafka import KafkaBroker

    class _ConcurrentlyStartedBroker(KafkaBroker):
        """Starting a group subscriber waits until the group has assigned its partitions (aiokafka's
        `start()`), seconds per group (5 s on Tansu); faststream starts subscribers one after another,
        so a service with three consumers consumed nothing for 15 s after a start or a restart.
        Here they join concurrently; the rest is faststream's own start (connect, then publishers)."""

        async def start(self) -> None:
            await self.connect()
            await asyncio.gather(*(subscriber.start() for subscriber in self.subscribers))
            for publisher in self.publishers:
                await publisher.start()
            self.running = True

    return _ConcurrentlyStartedBroker


FETCH_MAX_WAIT_MS = 100
"""How long the broker may hold a fetch that has nothing new for its partitions (Kafka's default: 500).

aiokafka keeps one fetch in flight per broker and asks only for partitions whose
buffered records are used up. When some partitions are caught up and another still
has a backlog, the caught-up ones' fetch is held for this long, and the backlog's
next fetch waits behind it: a catch-up (a replay, a rebuild, a consumer back from a
pause) loses up to this long each time. Measured on Tansu: 0.4–0.5 s of a 1.4 s
consumption of 20,200 events at 500 ms, none at 100 ms (docs/benchmarks.md). The
cost of a lower value is an idle consumer's fetch requests: ten a second, not two."""


MAX_REQUEST_BYTES = 1_048_576
"""The largest request (one record batch, headers included) our producers send: the brokers' and the topics'
`max.message.bytes` must be at least this (Kafka's default, 1,048,588, is). Set explicitly so that the limit is
a decision rather than a client default; a dead letter is built to stay below it (dlq.DeadLetters)."""

MAX_PARTITION_FETCH_BYTES = 1_048_576
"""What a consumer asks of one partition per fetch (Kafka's default, stated). A record batch larger than this
(the brokers' `max.message.bytes` is 1,048,588) is still returned whole as the first batch of a fetch (KIP-74,
every Kafka since 0.10.1), so no record is ever too large to be fetched and dead-lettered. Twice this cost
0.7–1.2 µs CPU per record of a raw consumption in an A/B (docs/benchmarks.md), for records that do not exist
on our topics: bodies over 1,000,000 bytes are dead-lettered anyway."""

FETCH_MAX_BYTES = 50 * 1_048_576
"""What a consumer asks of one broker per fetch over all its partitions (Kafka's default, stated)."""


def consumer_options(fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS) -> dict[str, Any]:
    """What every consumer of ours passes to aiokafka, directly or through faststream (each also turns
    automatic offset commits off, in the way its client takes it)."""
    return {
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": MAX_PARTITION_FETCH_BYTES,
        "fetch_max_bytes": FETCH_MAX_BYTES,
    }


def producer_options(idempotence: bool) -> dict[str, Any]:
    return {
        "acks": "all",
        "enable_idempotence": idempotence,
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "max_request_size": MAX_REQUEST_BYTES,
        "request_timeout_ms": 30_000,
    }


class AiokafkaPublisher:
    """Publisher on a plain AIOKafkaProducer: all sends of a batch in flight, then awaited together.

    The producer is created in `start()`, inside the running loop, so building a
    service (create_app) never needs one.
    """

    def __init__(self, bootstrap_servers: str, *, idempotence: bool = False, client_id: str = "tsunagu") -> None:
        self.bootstrap_servers = bootstrap_servers
        self.idempotence = idempotence
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, client_id=self.client_id, **producer_options(self.idempotence)
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if self._producer is None:
            raise ConnectionError("publisher not started")
        pending = [await self._producer.send(m.topic, value=m.value, key=m.key, headers=m.headers) for m in messages]
        if pending:
            await asyncio.gather(*pending)


class FaststreamPublisher:
    """Publisher through a faststream KafkaBroker, so `TestKafkaBroker` sees what a service publishes."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        for m in messages:
            headers = {k: v.decode("utf-8", "replace") for k, v in m.headers}
            await self._broker.publish(m.value or b"", m.topic, key=m.key, headers=headers)


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    config: dict[str, str] | None = None,
    retention: Callable[[str], int] = retention_ms,
) -> list[str]:
    """Create missing topics, each with its retention (`retention`, by default `topics.retention_ms`);
    returns the ones created.

    Safe to run any number of times.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in dict.fromkeys(topics) if t not in existing]
        if not wanted:
            return []
        new_topics = [
            NewTopic(
                t,
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs={"retention.ms": str(retention(t)), **(config or {})},
            )
            for t in wanted
        ]
        try:
            response = await admin.create_topics(new_topics)
        except TopicAlreadyExistsError:
            return wanted
        # CreateTopics answers per topic, and aiokafka does not raise for those answers: a topic
        # Apache Kafka refused (replication above the broker count, a bad config) would pass silently.
        for topic, code, *message in getattr(response, "topic_errors", ()):
            if code not in (0, TopicAlreadyExistsError.errno):
                detail = message[0] if message and message[0] else ""
                raise for_code(code)(f"topic {topic} was not created: {detail}")
        return wanted
    finally:
        await admin.close()


async def end_distance(consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]) -> int:
    """How many records lie between the consumer's positions and the ends of `partitions`.

    The end is the larger of the ListOffsets answer and the high watermark seen in
    fetch responses: Tansu answers ListOffsets(latest) wrongly, while every fetch
    response carries the true high watermark. A partition not fetched yet counts as
    one record behind, so "caught up" is never claimed before it has been seen.
    """
    if not partitions:
        return 0
    listed = await consumer.end_offsets(list(partitions))
    behind = 0
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None:
            behind += 1
            continue
        behind += max(0, max(listed.get(tp, 0), highwater) - await consumer.position(tp))
    return behind
