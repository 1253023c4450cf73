"""Wiring an EventConsumer to a faststream Kafka subscriber.

Batches of raw records reach the consumer untouched (no JSON decoding by
faststream: a garbage message must reach the DLQ, not crash the decoder). The
offset is committed only after the batch's transaction committed; on an
infrastructure failure the batch is nacked (faststream seeks back) after a pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from tsunagu_platform.consumer import EventConsumer, IncomingRecord
from tsunagu_platform.kafka import FETCH_MAX_WAIT_MS, consumer_options

log = structlog.get_logger("tsunagu.subscription")


async def _raw(message: Any) -> Any:
    return message.body


def records_of(message: KafkaMessage) -> list[IncomingRecord]:
    raw = message.raw_message
    items = raw if isinstance(raw, tuple | list) else (raw,)
    return [IncomingRecord.from_consumer_record(record) for record in items]


def subscribe(
    broker: KafkaBroker,
    consumer: EventConsumer,
    topics: Sequence[str],
    *,
    group_id: str,
    max_records: int = 500,
    failure_pause: float = 1.0,
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
) -> Any:
    """Register `consumer` on `topics` under consumer group `group_id`."""

    async def on_batch(body: Any, message: KafkaMessage) -> None:
        try:
            await consumer.handle_batch(records_of(message))
        except Exception as error:
            log.error("consumer.batch_will_be_redelivered", consumer=consumer.name, error_type=type(error).__name__)
            await asyncio.sleep(failure_pause)
            raise

    subscriber = broker.subscriber(
        *topics,
        batch=True,
        group_id=group_id,
        max_records=max_records,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=_raw,
        title=f"{consumer.name}",
        **consumer_options(fetch_max_wait_ms),
    )
    subscriber(on_batch)
    return subscriber
