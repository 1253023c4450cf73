"""Audit: each stream's hash chain verified from the events as published on the topics.

Reporting reads the topics themselves, not its projections: the projections' per-stream
ordering drops a second copy of a version as a replay, but to an auditor a second copy
that differs from the first is exactly the forgery to find. Every break is named by
stream, version, event id and where it sits on the topic.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from tsunagu_events import EventEnvelope, from_kafka
from tsunagu_events.binding import EventDecodeError
from tsunagu_events.chain import canonical_form, verify_chain
from tsunagu_platform.kafka import end_distance

READ_LIMIT_SECONDS = 600


@dataclass(frozen=True)
class Located:
    envelope: EventEnvelope
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Break:
    stream_id: str
    version: int
    event_id: str
    reason: str
    topic: str
    partition: int
    offset: int


@dataclass
class ChainReport:
    topics: list[str]
    records: int = 0
    streams: int = 0
    undecodable: int = 0
    breaks: list[Break] = field(default_factory=list)


async def read_published(bootstrap: str, topics: Sequence[str], *, batch: int = 5000) -> tuple[list[Located], int]:
    """Every record of the topics from the start to their end now, decoded; and how many could not be."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: list[Located] = []
    bad = 0
    try:
        partitions = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            if not found:
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(topic) or set()
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        if not partitions:
            return out, 0
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + READ_LIMIT_SECONDS
        while time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=300, max_records=batch)
            for records in fetched.values():
                for record in records:
                    headers = tuple((k, v or b"") for k, v in (record.headers or ()))
                    try:
                        envelope = from_kafka(headers, record.value).envelope
                    except EventDecodeError:
                        bad += 1
                        continue
                    out.append(Located(envelope, record.topic, record.partition, record.offset))
            # The end is judged as the projections judge it (Tansu's ListOffsets answer alone is not to be trusted).
            if not fetched and await end_distance(consumer, partitions) == 0:
                break
        else:
            raise TimeoutError(f"the topics were not read to their end within {READ_LIMIT_SECONDS}s")
    finally:
        await consumer.stop()
    return out, bad


def verify_published(records: Sequence[Located], stream_filter: set[str] | None = None) -> tuple[int, list[Break]]:
    """First break of every stream: a broken link, a gap, or a second copy of a version that differs."""
    streams: dict[str, dict[int, Located]] = {}
    breaks: dict[str, Break] = {}
    for item in records:
        envelope = item.envelope
        if stream_filter is not None and envelope.streamid not in stream_filter:
            continue
        versions = streams.setdefault(envelope.streamid, {})
        first = versions.get(envelope.streamversion)
        if first is None:
            versions[envelope.streamversion] = item
        elif (first.envelope.chainhash, canonical_form(first.envelope)) != (
            envelope.chainhash,
            canonical_form(envelope),
        ) and envelope.streamid not in breaks:
            breaks[envelope.streamid] = Break(
                envelope.streamid,
                envelope.streamversion,
                envelope.id,
                f"a second copy of version {envelope.streamversion} differs from the one first published "
                f"at {first.topic}[{first.partition}]@{first.offset}",
                item.topic,
                item.partition,
                item.offset,
            )
    for stream, versions in streams.items():
        ordered = [versions[v] for v in sorted(versions)]
        found = verify_chain(x.envelope for x in ordered)
        if found is None:
            continue
        where = next((x for x in ordered if x.envelope.id == found.event_id), ordered[0])
        candidate = Break(
            found.stream_id, found.version, found.event_id, found.reason, where.topic, where.partition, where.offset
        )
        earlier = breaks.get(stream)
        if earlier is None or candidate.version <= earlier.version:
            breaks[stream] = candidate
    return len(streams), sorted(breaks.values(), key=lambda b: (b.stream_id, b.version))


async def verify_topics(bootstrap: str, topics: Sequence[str], stream_filter: set[str] | None = None) -> ChainReport:
    records, bad = await read_published(bootstrap, topics)
    report = ChainReport(list(topics), records=len(records), undecodable=bad)
    report.streams, report.breaks = verify_published(records, stream_filter)
    return report
