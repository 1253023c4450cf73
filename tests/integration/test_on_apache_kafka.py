"""The backbone on Apache Kafka and PostgreSQL in containers, where a Docker engine is reachable.

On these machines there is none, and the tests skip saying so; the same scenarios run
on the Tansu broker and the local PostgreSQL in test_backbone_processes.py. Apache
Kafka accepts idempotent producers, so producer idempotence is on here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from tsunagu_events.topics import dlq_topic
from tsunagu_platform.consumer import DeadLetters, EventConsumer
from tsunagu_platform.db import create_engine
from tsunagu_platform.example import append_tallies, count_inbox, handle_tally, migrate, read_totals
from tsunagu_platform.kafka import AiokafkaPublisher, ensure_topics, faststream_broker
from tsunagu_platform.relay import OutboxRelay
from tsunagu_platform.subscription import subscribe
from tsunagu_platform.testing import docker_engine_reason

pytestmark = pytest.mark.integration

KAFKA_IMAGE = "apache/kafka:4.1.0"
POSTGRES_IMAGE = "postgres:16.4"


@pytest.fixture(scope="module")
def containers() -> Iterator[tuple[str, str]]:
    reason = docker_engine_reason()
    if reason:
        pytest.skip(f"testcontainers needs a Docker engine: {reason}; the Tansu + local PostgreSQL runs cover this")
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka, PostgresContainer(POSTGRES_IMAGE, driver=None) as pg:
        yield kafka.get_bootstrap_server(), pg.get_connection_url()


async def test_appended_event_is_relayed_and_consumed_once_on_apache_kafka(containers: tuple[str, str]) -> None:
    bootstrap, database_url = containers
    topic = "tc.example.events"
    await ensure_topics(bootstrap, [topic, dlq_topic(topic)], partitions=3)
    engine = create_engine(database_url)
    await migrate(engine)
    publisher = AiokafkaPublisher(bootstrap, idempotence=True)
    await publisher.start()
    broker = faststream_broker(bootstrap, idempotence=True)
    consumer = EventConsumer("tc.totals", engine, handle_tally, DeadLetters(publisher, "tc.totals"))
    subscribe(broker, consumer, [topic], group_id="tc.totals")
    await broker.start()
    try:
        await append_tallies(engine, streams=3, events=10, topic=topic)
        relay = OutboxRelay(engine, publisher, service="tc")
        while await relay.publish_pending():
            pass
        for _ in range(200):
            if sum(e for _, e in (await read_totals(engine)).values()) >= 30:
                break
            await asyncio.sleep(0.1)
        assert sum(e for _, e in (await read_totals(engine)).values()) == 30
        assert await count_inbox(engine, "tc.totals") == 30
    finally:
        await broker.stop()
        await publisher.stop()
        await engine.dispose()
