"""Dead letters: sending them without ever blocking a consumer, and replaying them once the cause is fixed.

Each DLQ message is the original record, unchanged, plus `dlq_*` headers saying why. A record too large to be
copied within the producer's request limit (kafka.MAX_REQUEST_BYTES) is dead-lettered as a reference instead:
its topic, partition, offset, size and reason, without its body (`dlq_body: omitted`), so an operator can find
it on the original topic while that topic's retention keeps it.

A dead letter the broker will not take (down, refusing, too slow) must neither stop the consumer nor be lost:
`DeadLetters` tries a bounded number of times, then keeps the letter in the consumer's own database
(`dead_letter_backlog`) and carries on; the backlog is sent again on later batches and emptied as the broker
takes it. Only a database that cannot keep the letter either fails the batch (an infrastructure failure: the
batch is redelivered, and a consumer stuck that way turns readiness to 503).

Replay publishes a dead letter back to its original topic without the `dlq_*` headers; the consumers' inboxes
make a replay of something already processed harmless. Progress is a consumer group of its own, so an
interrupted replay resumes where it stopped. References (no body) are skipped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_events.envelope import format_time, now
from tsunagu_events.topics import dlq_topic

from tsunagu_platform.kafka import MAX_REQUEST_BYTES, OutgoingMessage, Publisher, consumer_options, end_distance
from tsunagu_platform.metrics import DEAD_LETTER_BACKLOG, DEAD_LETTER_PUBLISH_FAILURES, DEAD_LETTERED
from tsunagu_platform.tables import dead_letter_backlog

if TYPE_CHECKING:
    from tsunagu_platform.consumer import Rejected

log = structlog.get_logger("tsunagu.dlq")

DLQ_HEADER_PREFIX = "dlq_"
BODY_OMITTED = b"omitted"

DLQ_RECORD_LIMIT = MAX_REQUEST_BYTES - 64 * 1024
"""A dead letter whose copy (key, headers, body) would exceed this is sent as a reference: the rest of the
producer's request limit is room for the `dlq_*` headers and the record batch's own overhead."""
KEPT_HEADER_BYTES = 16 * 1024
"""A reference keeps the original headers only up to this size (they may be what made the record too large)."""
KEPT_KEY_BYTES = 1024


def _unpacked(headers: str) -> list[tuple[str, bytes]]:
    return [(k, base64.b64decode(v)) for k, v in json.loads(headers)]


def _size(headers: Sequence[tuple[str, bytes]]) -> int:
    return sum(len(k) + len(v) for k, v in headers)


class DeadLetters:
    """Publishes rejected records to `<topic>.dlq` with `dlq_*` headers saying why; never blocks the consumer.

    `engine` is the consumer's database, where letters the broker would not take are kept
    (`EventConsumer` sets it to its own when none is given).
    """

    def __init__(
        self,
        publisher: Publisher,
        consumer: str,
        clock: Callable[[], datetime] = now,
        *,
        engine: AsyncEngine | None = None,
        attempts: int = 3,
        retry_delay: float = 0.2,
        backlog_retry_seconds: float = 30.0,
    ) -> None:
        self.publisher = publisher
        self.consumer = consumer
        self.clock = clock
        self.engine = engine
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.backlog_retry_seconds = backlog_retry_seconds
        self._backlog_pending: bool | None = None  # None: not looked at since the process started
        self._backlog_next_try = 0.0

    def letter(self, item: Rejected) -> OutgoingMessage:
        """The DLQ message of a rejected record: a copy, or a reference when the copy would be too large."""
        record = item.record
        headers = [(k, v) for k, v in record.headers if not k.startswith(DLQ_HEADER_PREFIX)]
        size = len(record.value or b"")
        key, value = record.key, record.value
        reference = size + _size(headers) + len(key or b"") > DLQ_RECORD_LIMIT
        if reference:
            if _size(headers) > KEPT_HEADER_BYTES:
                headers = []
            if key is not None and len(key) > KEPT_KEY_BYTES:
                key = None
            value = json.dumps(
                {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "size": size,
                    "reason": item.reason,
                },
                separators=(",", ":"),
            ).encode()
        headers += [
            ("dlq_reason", item.reason.encode()),
            ("dlq_detail", item.detail[:500].encode("utf-8", "replace")),
            ("dlq_consumer", self.consumer.encode()),
            ("dlq_original_topic", record.topic.encode()),
            ("dlq_original_partition", str(record.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_original_size", str(size).encode()),
            ("dlq_at", format_time(self.clock()).encode()),
        ]
        if reference:
            headers.append(("dlq_body", BODY_OMITTED))
        return OutgoingMessage(dlq_topic(record.topic), key, value, headers)

    async def send(self, rejected: Sequence[Rejected]) -> None:
        if not rejected:
            await self.flush_backlog()
            return
        messages = []
        for item in rejected:
            record = item.record
            messages.append(self.letter(item))
            DEAD_LETTERED.labels(self.consumer, item.reason).inc()
            log.warning(
                "consumer.dead_lettered",
                consumer=self.consumer,
                reason=item.reason,
                detail=item.detail[:200],
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        await self.flush_backlog()
        if not await self._publish(messages):
            await self._keep(messages)

    async def _publish(self, messages: Sequence[OutgoingMessage]) -> bool:
        """True once the broker took them all; False after `attempts` failures (each logged and counted)."""
        for attempt in range(1, self.attempts + 1):
            try:
                await self.publisher.publish(messages)
                return True
            except Exception as error:  # whatever the client raises: the consumer must carry on
                DEAD_LETTER_PUBLISH_FAILURES.labels(self.consumer).inc()
                log.error(
                    "consumer.dead_letter_publish_failed",
                    consumer=self.consumer,
                    attempt=attempt,
                    of=self.attempts,
                    letters=len(messages),
                    error_type=type(error).__name__,
                )
                if attempt < self.attempts:
                    await asyncio.sleep(self.retry_delay * attempt)
        return False

    async def _keep(self, messages: Sequence[OutgoingMessage]) -> None:
        if self.engine is None:
            # Only in tests that give neither: nothing to keep them in. Said loudly, counted.
            log.error("consumer.dead_letters_lost", consumer=self.consumer, letters=len(messages))
            return
        kept_at = now()
        rows = [
            {
                "consumer": self.consumer,
                "topic": m.topic,
                "key": m.key,
                "value": m.value,
                "headers": json.dumps([(k, base64.b64encode(v).decode()) for k, v in m.headers]),
                "kept_at": kept_at,
            }
            for m in messages
        ]
        async with self.engine.begin() as conn:
            await conn.execute(insert(dead_letter_backlog), rows)
        DEAD_LETTER_BACKLOG.labels(self.consumer).inc(len(rows))
        log.error("consumer.dead_letters_kept_locally", consumer=self.consumer, letters=len(rows))
        self._backlog_pending = True
        self._backlog_next_try = time.monotonic() + self.backlog_retry_seconds

    async def flush_backlog(self, *, force: bool = False) -> int:
        """Send what the backlog holds (oldest first) and forget what the broker took; returns how many.

        Looked at once after a start, then only while something is kept, at most every
        `backlog_retry_seconds` (a broker that refused a moment ago is not asked at every batch)."""
        if self.engine is None or self._backlog_pending is False:
            return 0
        if not force and self._backlog_pending and time.monotonic() < self._backlog_next_try:
            return 0
        sent = 0
        while True:
            try:
                rows = await self._backlog_rows()
            except Exception as error:  # looking at the backlog must never stop the consumer either
                log.error(
                    "consumer.dead_letter_backlog_unreadable", consumer=self.consumer, error_type=type(error).__name__
                )
                self._backlog_next_try = time.monotonic() + self.backlog_retry_seconds
                return sent
            if not rows:
                self._backlog_pending = False
                return sent
            messages = [
                OutgoingMessage(row["topic"], row["key"], row["value"], _unpacked(row["headers"])) for row in rows
            ]
            if not await self._publish(messages):
                self._backlog_pending = True
                self._backlog_next_try = time.monotonic() + self.backlog_retry_seconds
                return sent
            async with self.engine.begin() as conn:
                sent_ids = [r["id"] for r in rows]
                await conn.execute(delete(dead_letter_backlog).where(dead_letter_backlog.c.id.in_(sent_ids)))
            DEAD_LETTER_BACKLOG.labels(self.consumer).dec(len(rows))
            sent += len(rows)
            log.info("consumer.dead_letter_backlog_sent", consumer=self.consumer, letters=len(rows))

    async def _backlog_rows(self) -> list[Any]:
        assert self.engine is not None
        query = (
            select(dead_letter_backlog)
            .where(dead_letter_backlog.c.consumer == self.consumer)
            .order_by(dead_letter_backlog.c.id)
            .limit(200)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).mappings().all())


@dataclass
class ReplayReport:
    replayed: int = 0
    skipped: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)


def _header(headers: list[tuple[str, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("utf-8", "replace")
    return None


async def replay_dlq(
    bootstrap_servers: str,
    dlq_topic: str,
    publisher: Publisher,
    *,
    reasons: set[str] | None = None,
    dry_run: bool = False,
    progress: Callable[[ReplayReport], None] | None = None,
) -> ReplayReport:
    """Republish every DLQ message present now (optionally only some reasons) to its original topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=f"tsunagu-dlq-replay.{dlq_topic}",
        enable_auto_commit=False,
        **consumer_options(),
    )
    await consumer.start()
    report = ReplayReport()
    try:
        partitions = consumer.partitions_for_topic(dlq_topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(dlq_topic) or set()
        assigned = [TopicPartition(dlq_topic, p) for p in sorted(partitions)]
        if not assigned:
            return report
        consumer.assign(assigned)  # resumes from the group's committed offsets, else the start
        idle_rounds = 0
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batch:
                idle_rounds += 1
                if idle_rounds >= 6 or await end_distance(consumer, assigned) == 0:
                    break
                continue
            idle_rounds = 0
            messages = []
            for records in batch.values():
                for record in records:
                    headers = list(record.headers or ())
                    reason = _header(headers, "dlq_reason") or "unknown"
                    target = _header(headers, "dlq_original_topic")
                    omitted = _header(headers, "dlq_body") == BODY_OMITTED.decode()
                    if target is None or omitted or (reasons is not None and reason not in reasons):
                        report.skipped += 1
                        continue
                    clean = [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]
                    messages.append(OutgoingMessage(target, record.key, record.value, clean))
                    report.by_reason[reason] += 1
            if not dry_run and messages:
                await publisher.publish(messages)
            report.replayed += len(messages)
            if not dry_run:
                await consumer.commit()
            if progress:
                progress(report)
        log.info("dlq.replayed", topic=dlq_topic, replayed=report.replayed, skipped=report.skipped, dry_run=dry_run)
        return report
    finally:
        await consumer.stop()
