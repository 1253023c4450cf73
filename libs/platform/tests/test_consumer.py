"""Consumer toolkit: inbox, DLQ reasons, bounded retries, version gaps held and released."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from faststream.kafka import KafkaBroker
from faststream.kafka.testing import TestKafkaBroker
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events import registry, to_kafka
from tsunagu_events.contracts.example import TALLY_RECORDED
from tsunagu_platform.consumer import DeadLetters, EventConsumer, IncomingRecord, ReceivedEvent
from tsunagu_platform.example import handle_tally, read_totals
from tsunagu_platform.kafka import FaststreamPublisher
from tsunagu_platform.subscription import subscribe
from tsunagu_platform.tables import held_events, inbox

from .helpers import CapturingPublisher, record_of, stored_events


def consumer_for(
    engine: AsyncEngine, dlq: CapturingPublisher, handler: object = handle_tally, **kw: object
) -> EventConsumer:
    return EventConsumer("test.totals", engine, handler, DeadLetters(dlq, "test.totals"), retry_delay=0.0, **kw)  # type: ignore[arg-type]


async def count_rows(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def test_redelivered_batch_has_no_second_effect(engine: AsyncEngine) -> None:
    events = await stored_events(engine, "w1", 5)
    dlq = CapturingPublisher()
    consumer = consumer_for(engine, dlq)
    records = [record_of(e, offset=i) for i, e in enumerate(events)]
    await consumer.handle_batch(records)
    await consumer.handle_batch(records)
    await consumer.handle_batch(records[2:])
    assert await read_totals(engine) == {"w1": (5, 5)}
    assert await count_rows(engine, inbox) == 5
    assert dlq.sent == []


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (IncomingRecord("t", 0, 0, b"k", b"\x00\x01garbage", ()), "undecodable"),
        (None, "unknown_type"),
        (None, "schema_violation"),
    ],
)
async def test_poison_messages_go_to_the_dlq_with_their_reason_and_the_rest_is_processed(
    engine: AsyncEngine, record: IncomingRecord | None, reason: str
) -> None:
    good = await stored_events(engine, "w1", 1)
    if record is None:
        other = await stored_events(engine, "w2", 1)
        data = other[0].data if reason == "unknown_type" else {"window": "w2", "count": -5, "category": "x"}
        kind = "tsunagu.example.Unheard" if reason == "unknown_type" else other[0].type
        record = record_of(other[0].model_copy(update={"type": kind, "data": data}))
    dlq = CapturingPublisher()
    await consumer_for(engine, dlq).handle_batch([record, record_of(good[0], offset=1)])
    assert await read_totals(engine) == {"w1": (1, 1)}
    assert len(dlq.sent) == 1
    assert dlq.sent[0].topic == "t.dlq"
    assert dlq.header(0, "dlq_reason") == reason
    assert dlq.header(0, "dlq_original_topic") == "t"
    assert dlq.sent[0].value == record.value


async def test_a_failing_handler_is_retried_then_dead_lettered_and_its_stream_held(engine: AsyncEngine) -> None:
    events = await stored_events(engine, "w1", 3)
    others = await stored_events(engine, "w2", 1)
    calls: list[int] = []

    async def flaky(conn: AsyncConnection, event: ReceivedEvent) -> None:
        if event.envelope.streamid == "w1" and event.envelope.streamversion == 2:
            calls.append(1)
            raise RuntimeError("山田太郎 cannot be handled")
        await handle_tally(conn, event)

    dlq = CapturingPublisher()
    consumer = consumer_for(engine, dlq, flaky, max_attempts=3)
    await consumer.handle_batch([record_of(e, offset=i) for i, e in enumerate([*events, *others])])
    assert len(calls) == 1 + 3  # the batch attempt, then three single attempts
    assert [dlq.header(0, "dlq_reason"), dlq.header(0, "dlq_detail")] == ["handler_error", "RuntimeError"]
    # w1 v3 waits behind the missing v2 instead of being skipped; w2 is unaffected.
    assert await read_totals(engine) == {"w1": (1, 1), "w2": (1, 1)}
    assert await count_rows(engine, held_events) == 1
    # Replaying the dead letter (handler fixed) fills the gap and releases v3.
    await consumer_for(engine, CapturingPublisher()).handle_batch([record_of(events[1])])
    assert await read_totals(engine) == {"w1": (3, 3), "w2": (1, 1)}
    assert await count_rows(engine, held_events) == 0


async def test_a_version_gap_is_held_then_released_in_order(engine: AsyncEngine) -> None:
    events = await stored_events(engine, "w1", 4)
    seen: list[int] = []

    async def recorder(conn: AsyncConnection, event: ReceivedEvent) -> None:
        seen.append(event.envelope.streamversion)

    consumer = consumer_for(engine, CapturingPublisher(), recorder)
    await consumer.handle_batch([record_of(events[0]), record_of(events[2]), record_of(events[3])])
    assert seen == [1]
    async with engine.connect() as conn:
        held = (await conn.execute(select(held_events.c.version).order_by(held_events.c.version))).scalars().all()
    assert held == [3, 4]
    await consumer.handle_batch([record_of(events[1])])
    assert seen == [1, 2, 3, 4]


async def test_out_of_order_within_a_batch_is_applied_in_version_order(engine: AsyncEngine) -> None:
    events = await stored_events(engine, "w1", 3)
    seen: list[int] = []

    async def recorder(conn: AsyncConnection, event: ReceivedEvent) -> None:
        seen.append(event.envelope.streamversion)

    await consumer_for(engine, CapturingPublisher(), recorder).handle_batch([record_of(e) for e in reversed(events)])
    assert seen == [1, 2, 3]


async def test_an_infrastructure_failure_raises_so_the_batch_is_redelivered(engine: AsyncEngine) -> None:
    events = await stored_events(engine, "w1", 1)

    async def database_gone(conn: AsyncConnection, event: ReceivedEvent) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionError("gone"))

    dlq = CapturingPublisher()
    with pytest.raises(OperationalError):
        await consumer_for(engine, dlq, database_gone).handle_batch([record_of(events[0])])
    assert dlq.sent == []
    assert await count_rows(engine, inbox) == 0


async def test_unversioned_consumer_dedupes_by_source_and_id(engine: AsyncEngine) -> None:
    events = await stored_events(engine, "w1", 1)
    same_id_other_source = events[0].model_copy(update={"source": "/agency/other", "streamversion": 7})
    consumer = consumer_for(engine, CapturingPublisher(), check_versions=False)
    await consumer.handle_batch([record_of(events[0]), record_of(same_id_other_source), record_of(events[0])])
    assert await read_totals(engine) == {"w1": (2, 2)}


def with_type(record: IncomingRecord, event_type: str, value: bytes | None = None) -> IncomingRecord:
    headers = tuple((k, event_type.encode() if k == "ce_type" else v) for k, v in record.headers)
    return record._replace(headers=headers, value=record.value if value is None else value)


@pytest.mark.parametrize("check_versions", [False, True])
async def test_a_consumer_passes_over_known_types_it_does_not_handle_without_judging_them(
    engine: AsyncEngine, check_versions: bool
) -> None:
    """A service consuming another's topic sees every type there; one it does not handle has no effect,
    so an unversioned consumer skips it before decoding (no inbox row, no DLQ). Types nobody registered
    and bad records of handled types are still dead-lettered; a versioned consumer decodes everything
    (its stream positions need every version)."""
    (tally,) = await stored_events(engine, "w1", 1)
    other_type = next(r.event_type for r in registry.registrations() if r.event_type != TALLY_RECORDED)
    valid = record_of(tally)
    records = [
        valid,
        with_type(record_of(tally.model_copy(update={"id": "other"})), other_type, b"not json"),
        with_type(record_of(tally.model_copy(update={"id": "nobody"})), "tsunagu.nobody.Knows"),
        with_type(record_of(tally.model_copy(update={"id": "broken"})), TALLY_RECORDED, b"not json"),
    ]
    dlq = CapturingPublisher()
    consumer = consumer_for(engine, dlq, handles=[TALLY_RECORDED], check_versions=check_versions)
    await consumer.handle_batch(records)

    assert await read_totals(engine) == {"w1": (1, 1)}
    reasons = sorted(dlq.header(i, "dlq_reason") for i in range(len(dlq.sent)))
    if check_versions:
        assert reasons == ["undecodable", "undecodable", "unknown_type"]
    else:
        assert reasons == ["undecodable", "unknown_type"]
        assert await count_rows(engine, inbox) == 1


async def test_faststream_subscriber_applies_each_event_once(engine: AsyncEngine) -> None:
    events = await stored_events(engine, "w1", 3)
    broker = KafkaBroker("localhost:9092")
    dlq_seen: list[bytes] = []

    @broker.subscriber("t.dlq")
    async def on_dlq(body: bytes) -> None:
        dlq_seen.append(body)

    consumer = EventConsumer(
        "test.totals", engine, handle_tally, DeadLetters(FaststreamPublisher(broker), "test.totals")
    )
    subscribe(broker, consumer, ["t"], group_id="test.totals")
    async with TestKafkaBroker(broker) as test_broker:
        for envelope in [*events, events[0]]:
            key, headers, value = to_kafka(envelope)
            await test_broker.publish(value, "t", key=key, headers={k: v.decode() for k, v in headers})
        await test_broker.publish(b"not an event", "t", key=b"x")
        structured = json.dumps(events[1].to_structured()).encode()
        await test_broker.publish(structured, "t", headers={"content-type": "application/cloudevents+json"})
    assert await read_totals(engine) == {"w1": (3, 3)}
    assert len(dlq_seen) == 1


def test_subscriptions_commit_offsets_only_after_processing() -> None:
    from faststream import AckPolicy

    broker = KafkaBroker("localhost:9092")
    consumer = EventConsumer("t", None, handle_tally, DeadLetters(CapturingPublisher(), "t"))  # type: ignore[arg-type]
    subscriber = subscribe(broker, consumer, ["t"], group_id="t")
    assert subscriber.ack_policy == AckPolicy.NACK_ON_ERROR
    assert subscriber.ack_policy != AckPolicy.ACK_FIRST


def test_subscriptions_bound_how_long_the_broker_may_hold_a_fetch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A caught-up partition's held fetch delays a backlogged partition's next one (kafka.FETCH_MAX_WAIT_MS):
    every subscription passes the bound to aiokafka, and operators can set it."""
    from tsunagu_platform.kafka import FETCH_MAX_WAIT_MS
    from tsunagu_platform.runtime import ServiceRuntime
    from tsunagu_platform.settings import ServiceSettings

    consumer = EventConsumer("t", None, handle_tally, DeadLetters(CapturingPublisher(), "t"))  # type: ignore[arg-type]
    default = subscribe(KafkaBroker("localhost:9092"), consumer, ["t"], group_id="t")
    chosen = subscribe(KafkaBroker("localhost:9092"), consumer, ["t"], group_id="t", fetch_max_wait_ms=250)
    # faststream keeps the keyword arguments it will build the AIOKafkaConsumer with here
    assert default._connection_args["fetch_max_wait_ms"] == FETCH_MAX_WAIT_MS < 500  # Kafka's default is 500
    assert chosen._connection_args["fetch_max_wait_ms"] == 250
    assert chosen._connection_args["enable_auto_commit"] is False

    monkeypatch.setenv("TSUNAGU_CONSUMER_FETCH_MAX_WAIT_MS", "40")
    settings = ServiceSettings(service="t", port=1, var_dir=tmp_path)
    assert settings.consumer_fetch_max_wait_ms == 40
    runtime = ServiceRuntime(settings)
    runtime.consume("totals", ["t"], handle_tally)
    (subscriber,) = runtime.broker.subscribers
    assert subscriber._connection_args["fetch_max_wait_ms"] == 40
    monkeypatch.setenv("TSUNAGU_CONSUMER_FETCH_MAX_WAIT_MS", "0")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        ServiceSettings(service="t", port=1)
