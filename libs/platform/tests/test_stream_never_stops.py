"""No message can stop or lose the stream: unreadable headers, records too large to copy, a DLQ the broker
will not take, a bad event in a large batch, and a consumer that cannot advance."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events import to_kafka
from tsunagu_events.topics import dlq_topic
from tsunagu_platform.consumer import DeadLetters, EventConsumer, IncomingRecord, ReceivedEvent
from tsunagu_platform.example import handle_tally, read_totals
from tsunagu_platform.kafka import (
    MAX_REQUEST_BYTES,
    AiokafkaPublisher,
    OutgoingMessage,
    ensure_topics,
    faststream_broker,
)
from tsunagu_platform.metrics import STALLED
from tsunagu_platform.subscription import subscribe
from tsunagu_platform.tables import dead_letter_backlog

from .helpers import CapturingPublisher, consume_all, record_of, stored_events


async def backlog_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(dead_letter_backlog)) or 0)


async def wait_for(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s")


class RefusingBroker(CapturingPublisher):
    """A DLQ publisher the broker will not take anything from until `recovered`."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.attempts = 0

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        self.attempts += 1
        if self.down:
            raise ConnectionError("broker gone")
        await super().publish(messages)


async def test_a_record_with_a_header_that_is_not_utf8_is_dead_lettered_alone_and_the_batch_is_applied(
    engine: AsyncEngine, kafka_bootstrap: str, unique_topic: str
) -> None:
    """faststream's batch parser decoded every header as UTF-8: one bad header lost the whole fetched batch."""
    await ensure_topics(kafka_bootstrap, [unique_topic, dlq_topic(unique_topic)], partitions=1)
    events = await stored_events(engine, "w1", 10)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i, envelope in enumerate(events):
            key, headers, value = to_kafka(envelope)
            if i == 4:
                headers = [*headers, ("x-agency-note", b"\xff\xfe\x80 not utf-8")]
            await producer.send(unique_topic, value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()
    publisher = AiokafkaPublisher(kafka_bootstrap)
    await publisher.start()
    broker = faststream_broker(kafka_bootstrap)
    consumer = EventConsumer("t.headers", engine, handle_tally, DeadLetters(publisher, "t.headers"), retry_delay=0.0)
    subscribe(broker, consumer, [unique_topic], group_id=f"{unique_topic}.headers")
    try:
        await broker.start()

        async def applied() -> bool:
            return (await read_totals(engine)).get("w1", (0, 0))[0] >= 4

        await wait_for(applied, "the records after the bad one applied")
        dead = await consume_all(kafka_bootstrap, dlq_topic(unique_topic), 1)
    finally:
        await broker.stop()
        await publisher.stop()
    assert len(dead) == 1
    headers = dict(dead[0].headers)  # type: ignore[attr-defined]
    assert headers["dlq_reason"] == b"undecodable"
    assert headers["x-agency-note"] == b"\xff\xfe\x80 not utf-8"  # the record as it came
    # v5 is dead-lettered, so v1–v4 are applied and v6–v10 wait behind the gap (held, not lost).
    assert await read_totals(engine) == {"w1": (4, 4)}


async def test_a_record_too_large_to_copy_is_dead_lettered_as_a_reference_without_its_body(
    engine: AsyncEngine, kafka_bootstrap: str, unique_topic: str
) -> None:
    """A 1,048,255-byte body's DLQ copy exceeded the producer's 1 MiB limit and the batch was redelivered forever."""
    await ensure_topics(kafka_bootstrap, [unique_topic, dlq_topic(unique_topic)], partitions=1)
    (good,) = await stored_events(engine, "w1", 1)
    body = b"x" * 1_048_255
    big = IncomingRecord(unique_topic, 0, 7, b"k", body, (("content-type", b"application/json"),))
    publisher = AiokafkaPublisher(kafka_bootstrap)
    await publisher.start()
    try:
        consumer = EventConsumer("t.big", engine, handle_tally, DeadLetters(publisher, "t.big"), retry_delay=0.0)
        await consumer.handle_batch([big, record_of(good, topic=unique_topic, offset=8)])
        dead = await consume_all(kafka_bootstrap, dlq_topic(unique_topic), 1)
    finally:
        await publisher.stop()
    assert await read_totals(engine) == {"w1": (1, 1)}
    assert len(dead) == 1
    letter = dead[0]
    headers = dict(letter.headers)  # type: ignore[attr-defined]
    assert headers["dlq_reason"] == b"oversized"
    assert headers["dlq_body"] == b"omitted"
    assert headers["dlq_original_size"] == b"1048255"
    assert json.loads(letter.value) == {  # type: ignore[attr-defined]
        "topic": unique_topic,
        "partition": 0,
        "offset": 7,
        "size": 1_048_255,
        "reason": "oversized",
    }
    assert len(letter.value) < MAX_REQUEST_BYTES  # type: ignore[attr-defined]


async def test_a_dlq_the_broker_will_not_take_never_blocks_the_consumer_and_loses_nothing(
    engine: AsyncEngine,
) -> None:
    """`DeadLetters.send` raised outside the try: the batch was redelivered forever and the other events waited."""
    events = await stored_events(engine, "w1", 2)
    broker = RefusingBroker()
    dead_letters = DeadLetters(broker, "t.totals", retry_delay=0.0)
    consumer = EventConsumer("t.totals", engine, handle_tally, dead_letters, retry_delay=0.0)
    poison = IncomingRecord("t", 0, 0, b"k", b"\xff not json", ())
    await consumer.handle_batch([poison, *[record_of(e, offset=i + 1) for i, e in enumerate(events)]])
    assert await read_totals(engine) == {"w1": (2, 2)}
    assert broker.attempts == dead_letters.attempts  # a bounded number of tries
    assert await backlog_rows(engine) == 1  # kept in the consumer's database
    broker.down = False
    await consumer.handle_batch([])  # the broker was refused a moment ago: not asked again at once
    assert await backlog_rows(engine) == 1
    assert await dead_letters.flush_backlog(force=True) == 1
    assert await backlog_rows(engine) == 0
    assert [m.value for m in broker.sent] == [b"\xff not json"]
    assert broker.header(0, "dlq_reason") == "undecodable"


async def test_one_bad_event_in_a_large_batch_costs_a_few_transactions_not_one_per_event(engine: AsyncEngine) -> None:
    """A batch that failed was retried one transaction per event (118 reports/s instead of ~400/s)."""
    events = await stored_events(engine, "w1", 200)

    async def one_bad(conn: AsyncConnection, received: ReceivedEvent) -> None:
        if received.envelope.streamversion == 137:
            raise ValueError("bad report")
        await handle_tally(conn, received)

    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _conn: commits.append(1))
    dlq = CapturingPublisher()
    consumer = EventConsumer("t.totals", engine, one_bad, DeadLetters(dlq, "t.totals"), retry_delay=0.0)
    await consumer.handle_batch([record_of(e, offset=i) for i, e in enumerate(events)])
    assert [dlq.header(0, "dlq_reason")] == ["handler_error"]
    assert await read_totals(engine) == {"w1": (136, 136)}  # v138… wait behind the dead-lettered v137
    assert len(commits) < 25


async def test_a_consumer_that_cannot_advance_turns_readiness_to_503_and_raises_a_metric(
    engine: AsyncEngine, tmp_path: object
) -> None:
    import httpx
    from fastapi import FastAPI
    from tsunagu_platform.http import health_router
    from tsunagu_platform.runtime import ServiceRuntime
    from tsunagu_platform.settings import ServiceSettings

    now = [1000.0]
    runtime = ServiceRuntime(
        ServiceSettings(service="t", port=1, var_dir=tmp_path, broker_mode="memory", consumer_stall_seconds=60)
    )
    runtime.started = True

    async def database_gone(conn: AsyncConnection, received: ReceivedEvent) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionError("gone"))

    consumer = runtime.consume("totals", ["t"], database_gone)
    consumer.engine = consumer.dead_letters.engine = engine
    consumer.clock = lambda: now[0]
    (event_,) = await stored_events(engine, "w1", 1)
    assert "consumers" not in await runtime.readiness()
    app = FastAPI()
    app.include_router(health_router(runtime))
    for _ in range(3):  # redelivered, failing each time
        with pytest.raises(OperationalError):
            await consumer.handle_batch([record_of(event_)])
        now[0] += 25
    assert await runtime.readiness() == {"database": "ok", "broker": "ok", "consumers": "stalled: t.totals"}
    assert STALLED.labels("t.totals")._value.get() == 1
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/health/ready")).status_code == 503
    await consumer.handle_batch([])  # it advances again
    assert "consumers" not in await runtime.readiness()
    assert STALLED.labels("t.totals")._value.get() == 0
    await runtime.stop()


async def test_a_dead_letter_sent_as_a_reference_is_not_replayed(
    engine: AsyncEngine, kafka_bootstrap: str, unique_topic: str
) -> None:
    """A reference carries no body: replaying it would publish the reference itself as if it were the record."""
    from tsunagu_platform.dlq import replay_dlq

    await ensure_topics(kafka_bootstrap, [unique_topic, dlq_topic(unique_topic)], partitions=1)
    publisher = AiokafkaPublisher(kafka_bootstrap)
    await publisher.start()
    try:
        consumer = EventConsumer("t.ref", engine, handle_tally, DeadLetters(publisher, "t.ref"), retry_delay=0.0)
        await consumer.handle_batch([IncomingRecord(unique_topic, 0, 3, b"k", b"y" * 1_048_000, ())])
        report = await replay_dlq(kafka_bootstrap, dlq_topic(unique_topic), publisher)
    finally:
        await publisher.stop()
    assert (report.replayed, report.skipped) == (0, 1)
