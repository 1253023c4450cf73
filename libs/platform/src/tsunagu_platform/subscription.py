"""Wiring an EventConsumer to a faststream Kafka subscriber.

Batches of raw records reach the consumer untouched (no JSON decoding by
faststream: a garbage message must reach the DLQ, not crash the decoder). The
offset is committed only after the batch's transaction committed; on an
infrastructure failure the batch is nacked (faststream seeks back) after a pause.

faststream's batch parser decodes every header value as UTF-8 for its own message
object: one record with a header that is not UTF-8 (or has no value) made it raise,
and the whole fetched batch was dropped while later offsets were committed. The
parser here never raises for one record: when faststream's cannot read a batch, it is
given readable copies of the headers, and the message keeps the original records, so
the consumer sees them as they came and dead-letters the bad one alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from tsunagu_platform.consumer import EventConsumer, IncomingRecord
from tsunagu_platform.kafka import FETCH_MAX_WAIT_MS, consumer_options

log = structlog.get_logger("tsunagu.subscription")


async def _raw(message: Any) -> Any:
    return message.body


def _readable(record: Any) -> Any:
    """A copy of a record whose header values faststream can decode (the consumer never sees it)."""
    headers = [
        (name, value.decode("utf-8", "replace").encode() if isinstance(value, bytes) else b"")
        for name, value in record.headers or ()
    ]
    return dataclasses.replace(record, headers=headers)


async def parse_batch_safely(records: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """faststream's batch parser, made unable to fail because of one record's headers."""
    try:
        return await original(records)
    except (UnicodeDecodeError, AttributeError):
        message = await original(tuple(_readable(record) for record in records))
        message.raw_message = records
        log.info("consumer.batch_with_unreadable_headers", records=len(records))
        return message


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
        parser=parse_batch_safely,
        title=f"{consumer.name}",
        **consumer_options(fetch_max_wait_ms),
    )
    subscriber(on_batch)
    return subscriber
