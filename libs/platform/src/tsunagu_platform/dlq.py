"""Replaying a dead-letter queue once the cause is fixed.

Each DLQ message is the original record, unchanged, plus `dlq_*` headers. Replay
publishes it back to its original topic without those headers; the consumers'
inboxes make a replay of something already processed harmless. Progress is a
consumer group of its own, so an interrupted replay resumes where it stopped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from tsunagu_platform.consumer import DLQ_HEADER_PREFIX
from tsunagu_platform.kafka import OutgoingMessage, Publisher, consumer_options, end_distance

log = structlog.get_logger("tsunagu.dlq")


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
                    if target is None or (reasons is not None and reason not in reasons):
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
