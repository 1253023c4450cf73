"""DLQ replay on the real broker: dead letters return to their topic and are then processed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_events.topics import dlq_topic
from tsunagu_platform.consumer import DeadLetters, EventConsumer, IncomingRecord
from tsunagu_platform.db import create_engine
from tsunagu_platform.dlq import replay_dlq
from tsunagu_platform.example import example_metadata, handle_tally, read_totals
from tsunagu_platform.kafka import AiokafkaPublisher, ensure_topics
from tsunagu_platform.store import EventStore
from tsunagu_platform.tables import metadata

from .helpers import CONTEXT, consume_all, record_of, tallies


@pytest.fixture
async def engine(tmp_path: object) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path}/dlq.db")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(example_metadata.create_all)
    yield engine
    await engine.dispose()


async def test_replayed_dead_letters_are_processed_once_and_replay_resumes(
    engine: AsyncEngine, kafka_bootstrap: str, unique_topic: str
) -> None:
    await ensure_topics(kafka_bootstrap, [unique_topic, dlq_topic(unique_topic)], partitions=2)
    events = await EventStore(engine, topic=unique_topic).append("w1", 0, tallies(3), CONTEXT)
    publisher = AiokafkaPublisher(kafka_bootstrap)
    await publisher.start()
    try:
        broken = True

        async def handler(conn: object, event: object) -> None:
            if broken:
                raise RuntimeError("bug")
            await handle_tally(conn, event)  # type: ignore[arg-type]

        consumer = EventConsumer("t.c", engine, handler, DeadLetters(publisher, "t.c"), retry_delay=0.0)
        records = [record_of(e, topic=unique_topic, offset=i) for i, e in enumerate(events)]
        garbage = IncomingRecord(unique_topic, 0, 9, b"k", b"garbage", ())
        await consumer.handle_batch([*records, garbage])
        dead = await consume_all(kafka_bootstrap, dlq_topic(unique_topic), 2)
        assert sorted(dict(r.headers)["dlq_reason"].decode() for r in dead) == [  # type: ignore[attr-defined]
            "handler_error",
            "undecodable",
        ]
        broken = False
        report = await replay_dlq(kafka_bootstrap, dlq_topic(unique_topic), publisher, reasons={"handler_error"})
        assert (report.replayed, report.skipped) == (1, 1)
        back = await consume_all(kafka_bootstrap, unique_topic, 1)
        assert len(back) == 1
        assert not any(k.startswith("dlq_") for k, _ in back[0].headers)  # type: ignore[attr-defined]
        await consumer.handle_batch([IncomingRecord.from_consumer_record(r) for r in back])
        assert await read_totals(engine) == {"w": (3, 3)}
        again = await replay_dlq(kafka_bootstrap, dlq_topic(unique_topic), publisher)
        assert again.replayed == 0, "a second replay starts where the first one ended"
    finally:
        await publisher.stop()
