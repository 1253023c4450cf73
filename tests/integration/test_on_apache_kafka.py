"""What differs between Apache Kafka 4.1 and the embedded Tansu broker, and Apache Kafka's replication.

The whole integration suite runs on both brokers (conftest.py); the tests here show, on both,
each difference docs/operations.md ("Apache Kafka") lists, so that a change of either broker
shows up as a failing test rather than as a surprise in production. The last two tests run a
three-node KRaft cluster (replication 3, min.insync.replicas 2) and kill -9 a broker under load.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from tsunagu_events.topics import dlq_topic
from tsunagu_platform.apache_kafka import KAFKA_VERSION, ApacheKafka, KafkaUnavailable
from tsunagu_platform.consumer import DeadLetters, EventConsumer
from tsunagu_platform.db import create_engine
from tsunagu_platform.example import append_tallies, count_inbox, handle_tally, migrate, read_totals
from tsunagu_platform.kafka import AiokafkaPublisher, OutgoingMessage, ensure_topics, faststream_broker
from tsunagu_platform.relay import OutboxRelay
from tsunagu_platform.subscription import subscribe
from tsunagu_platform.testing import kafka_skip_or_fail

from .processes import APACHE_KAFKA, TANSU, broker_of, eventually, run

pytestmark = pytest.mark.integration


ROOT = Path(__file__).resolve().parents[2]


def test_the_broker_under_test_is_the_release_compose_deploys() -> None:
    """deploy/kafka-dist's kafka.version, the fixture's and the Makefile's KAFKA_VERSION and compose's image agree."""
    compose = (ROOT / "docker-compose.yml").read_text()
    pom = (ROOT / "deploy" / "kafka-dist" / "pom.xml").read_text()
    assert f"\nKAFKA_VERSION := {KAFKA_VERSION}\n" in (ROOT / "Makefile").read_text()
    assert f"image: apache/kafka:{KAFKA_VERSION}\n" in compose
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom


def on(request: pytest.FixtureRequest) -> str:
    broker = broker_of(request)
    if broker not in (TANSU, APACHE_KAFKA):
        pytest.skip("compares the two brokers; KAFKA_BOOTSTRAP_SERVERS names another one")
    return str(broker)


@pytest.mark.apache_kafka
async def test_appended_event_is_relayed_and_consumed_once_on_apache_kafka(
    apache_kafka_bootstrap: str, database_url: str, unique_topic: str
) -> None:
    """The backbone with producer idempotence on, as compose runs it (this test used Docker before)."""
    bootstrap = apache_kafka_bootstrap
    topic = unique_topic
    await ensure_topics(bootstrap, [topic, dlq_topic(topic)], partitions=3)
    engine = create_engine(database_url)
    await migrate(engine)
    publisher = AiokafkaPublisher(bootstrap, idempotence=True)
    await publisher.start()
    broker = faststream_broker(bootstrap, idempotence=True)
    consumer = EventConsumer("tc.totals", engine, handle_tally, DeadLetters(publisher, "tc.totals"))
    subscribe(broker, consumer, [topic], group_id=f"tc.totals.{topic}")
    await broker.start()
    try:
        await append_tallies(engine, streams=3, events=10, topic=topic)
        relay = OutboxRelay(engine, publisher, service="tc")
        while await relay.publish_pending():
            pass

        async def all_counted() -> bool:
            return sum(e for _, e in (await read_totals(engine)).values()) >= 30

        await eventually(all_counted, timeout=60, what="30 tallies counted")
        assert sum(e for _, e in (await read_totals(engine)).values()) == 30
        assert await count_inbox(engine, "tc.totals") == 30
    finally:
        await broker.stop()
        await publisher.stop()
        await engine.dispose()


async def test_only_apache_kafka_grants_idempotent_producers(
    request: pytest.FixtureRequest, kafka_bootstrap: str, unique_topic: str
) -> None:
    """InitProducerId: Apache Kafka grants it; Tansu answers UNKNOWN_SERVER_ERROR (hence KAFKA_IDEMPOTENCE)."""
    broker = on(request)
    await ensure_topics(kafka_bootstrap, [unique_topic], partitions=1)
    publisher = AiokafkaPublisher(kafka_bootstrap, idempotence=True)
    if broker == TANSU:
        with pytest.raises(KafkaError):
            await asyncio.wait_for(publisher.start(), timeout=60)
        await publisher.stop()
        return
    await publisher.start()
    try:
        await publisher.publish([OutgoingMessage(unique_topic, b"k", b"v", [])])
    finally:
        await publisher.stop()


async def test_service_processes_run_with_the_producer_idempotence_of_their_broker(
    request: pytest.FixtureRequest, kafka_bootstrap: str
) -> None:
    """What a service process started by a test reads: KAFKA_IDEMPOTENCE=true on Apache Kafka, as compose sets it."""
    broker = on(request)
    code = "from tsunagu_platform.settings import ServiceSettings as S; print(S(service='x', port=0).kafka_idempotence)"
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("True" if broker == APACHE_KAFKA else "False")


async def test_a_record_for_a_topic_nobody_created_is_refused_by_apache_kafka_and_created_by_tansu(
    request: pytest.FixtureRequest, kafka_bootstrap: str, unique_topic: str
) -> None:
    """auto.create.topics.enable=false as in compose: a mistyped topic fails instead of starting an empty history."""
    broker = on(request)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=5000)
    await producer.start()
    try:
        if broker == APACHE_KAFKA:
            with pytest.raises(KafkaError):
                await producer.send_and_wait(unique_topic, b"typo")
        else:
            await producer.send_and_wait(unique_topic, b"typo")
    finally:
        await producer.stop()


async def create_topic_error(bootstrap: str, topic: NewTopic) -> int:
    """The per-topic error code of a CreateTopics request (aiokafka returns it instead of raising)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([topic])
        return int(response.topic_errors[0][1])
    finally:
        await admin.close()


@pytest.mark.parametrize(
    ("setting", "kafka_error"),
    [
        (NewTopic("_", 1, 1, topic_configs={"retention.ms": "forever"}), 40),  # INVALID_CONFIG
        (NewTopic("_", 1, 1, topic_configs={"no.such.setting": "1"}), 40),  # INVALID_CONFIG
        (NewTopic("_", 1, 3), 38),  # INVALID_REPLICATION_FACTOR: one broker
    ],
    ids=["invalid-retention", "unknown-config", "replication-above-brokers"],
)
async def test_topic_settings_apache_kafka_refuses_are_accepted_by_tansu(
    request: pytest.FixtureRequest, kafka_bootstrap: str, unique_topic: str, setting: NewTopic, kafka_error: int
) -> None:
    broker = on(request)
    topic = NewTopic(
        unique_topic, setting.num_partitions, setting.replication_factor, topic_configs=setting.topic_configs
    )
    assert await create_topic_error(kafka_bootstrap, topic) == (kafka_error if broker == APACHE_KAFKA else 0)


@pytest.mark.apache_kafka
async def test_ensure_topics_fails_when_apache_kafka_refuses_the_topic(
    apache_kafka_bootstrap: str, unique_topic: str
) -> None:
    """TSUNAGU_TOPIC_REPLICATION_FACTOR=3 against one broker: Kafka refuses; start-up must not carry on silently."""
    with pytest.raises(KafkaError):
        await ensure_topics(apache_kafka_bootstrap, [unique_topic], replication_factor=3)


async def test_a_service_broker_bootstraps_from_a_comma_separated_list_of_brokers(
    request: pytest.FixtureRequest, kafka_bootstrap: str
) -> None:
    """KAFKA_BOOTSTRAP_SERVERS=kafka:9092,kafka-2:9092,kafka-3:9092 as docker-compose.cluster.yml sets it."""
    on(request)
    broker = faststream_broker(f"{kafka_bootstrap},{kafka_bootstrap}")
    try:
        await asyncio.wait_for(broker.connect(), timeout=60)
    finally:
        await broker.stop()


# --- three nodes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """Three combined KRaft nodes, replication 3, min.insync.replicas 2 (as docker-compose.cluster.yml)."""
    try:
        cluster = ApacheKafka(tmp_path_factory.mktemp("kafka-cluster"), nodes=3)
    except KafkaUnavailable as reason:
        kafka_skip_or_fail(str(reason))
        raise
    with cluster:
        yield cluster


async def leader_of_most_partitions(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        leaders = Counter(int(p["leader"]) for p in described["partitions"])
        return leaders.most_common(1)[0][0]
    finally:
        await admin.close()


async def read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    values: list[bytes] = []
    try:
        idle = 0
        while idle < 8:
            batch = await consumer.getmany(timeout_ms=500)
            got = [r.value for records in batch.values() for r in records if r.value is not None]
            values += got
            idle = 0 if got or len(values) < expected else idle + 1
        return values
    finally:
        await consumer.stop()


@pytest.mark.apache_kafka
async def test_every_acknowledged_event_is_stored_exactly_once_when_a_broker_is_killed_under_load(
    three_node_cluster: ApacheKafka, tmp_path: Path
) -> None:
    """kill -9 of the broker leading most partitions while the relay's publisher (acks=all, idempotent)
    sends 5,000 events: every send the broker acknowledged is in the topic once, none twice."""
    cluster = three_node_cluster
    bootstrap = cluster.bootstrap_servers
    topic = "cluster.load.events"
    await ensure_topics(bootstrap, [topic], partitions=6, replication_factor=3)
    victim_id = await leader_of_most_partitions(bootstrap, topic)
    victim = next(n for n in cluster.nodes if n.node_id == victim_id)
    publisher = AiokafkaPublisher(bootstrap, idempotence=True)
    await publisher.start()
    acknowledged: list[bytes] = []
    attempted: set[bytes] = set()
    senders, batches, size = 4, 50, 25  # 5,000 events, four batches in flight at a time
    killed_at: list[int] = []

    async def send(sender: int) -> None:
        for b in range(batches):
            values = [f"{sender}-{b}-{i}".encode() for i in range(size)]
            attempted.update(values)
            try:
                await publisher.publish([OutgoingMessage(topic, v[:6], v, []) for v in values])
            except KafkaError:
                continue  # not acknowledged: may be stored or not, but never twice
            acknowledged.extend(values)
            if not killed_at and len(acknowledged) >= senders * batches * size // 3:
                victim.kill()  # the other senders' batches are in flight
                killed_at.append(len(acknowledged))

    try:
        await asyncio.wait_for(asyncio.gather(*(send(s) for s in range(senders))), timeout=300)
    finally:
        await publisher.stop()
    assert killed_at, "the broker was never killed"
    victim.start()
    await asyncio.to_thread(cluster.wait_until_ready, 180)

    stored = Counter(await read_all(bootstrap, topic, expected=len(acknowledged)))
    assert len(acknowledged) > killed_at[0], "two brokers of three (min.insync.replicas 2) took no more writes"
    assert [v for v in acknowledged if stored[v] != 1] == [], "acknowledged events lost or doubled"
    assert [v for v, n in stored.items() if n > 1] == [], "events stored twice"
    assert set(stored) <= attempted


@pytest.mark.apache_kafka
async def test_every_relayed_tally_is_counted_once_when_a_broker_is_killed_while_the_relay_publishes(
    three_node_cluster: ApacheKafka, tmp_path: Path
) -> None:
    """The backbone's own path on three brokers: 5,000 outbox events relayed (batches of 100) while a
    consumer group counts them; kill -9 of the broker leading most partitions after a third. A batch
    the relay could not publish is published again (at least once); the inbox makes the count exact."""
    cluster = three_node_cluster
    bootstrap = cluster.bootstrap_servers
    topic = "cluster.tally.events"
    await ensure_topics(bootstrap, [topic, dlq_topic(topic)], partitions=6, replication_factor=3)
    victim_id = await leader_of_most_partitions(bootstrap, topic)
    victim = next(n for n in cluster.nodes if n.node_id == victim_id)
    engine = create_engine(f"sqlite:///{tmp_path / 'tallies.db'}")
    await migrate(engine)
    total = await append_tallies(engine, streams=50, events=100, topic=topic)
    publisher = AiokafkaPublisher(bootstrap, idempotence=True)
    await publisher.start()
    # One address, of a broker that stays up (a list works too: the comma-separated test above).
    survivor = next(n for n in cluster.nodes if n.node_id != victim_id).bootstrap_server
    broker = faststream_broker(survivor, idempotence=True)
    consumer = EventConsumer("cluster.totals", engine, handle_tally, DeadLetters(publisher, "cluster.totals"))
    subscribe(broker, consumer, [topic], group_id="cluster.totals")
    await broker.start()
    relay = OutboxRelay(engine, publisher, service="cluster", batch_size=100)
    relayed, failed_batches, killed = 0, 0, False
    try:
        while True:
            try:
                published = await relay.publish_pending()
            except KafkaError:
                failed_batches += 1  # not marked: the next call publishes the batch again
                continue
            if not published:
                break
            relayed += published
            if not killed and relayed >= total // 3:
                victim.kill()
                killed = True
        victim.start()
        await asyncio.to_thread(cluster.wait_until_ready, 180)

        async def all_counted() -> bool:
            return sum(e for _, e in (await read_totals(engine)).values()) >= total

        await eventually(all_counted, timeout=180, what=f"{total} tallies counted")
        assert sum(e for _, e in (await read_totals(engine)).values()) == total
        assert await count_inbox(engine, "cluster.totals") == total
    finally:
        await broker.stop()
        await publisher.stop()
        await engine.dispose()
    assert killed
