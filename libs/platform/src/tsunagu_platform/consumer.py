"""Idempotent event consumers: inbox, stream-version ordering, bounded retries and a DLQ.

Kafka delivers at least once and the relay publishes at least once, so every
consumer must make redelivery harmless. A batch's effects, its inbox rows and its
stream positions commit in one database transaction; only then is the Kafka offset
committed. A crash anywhere before that commit redelivers the batch, and the inbox
turns the redelivery into a no-op. Nothing is acknowledged before it is processed
(faststream's default ACK_FIRST would be at-most-once).

Poison messages must not stop a consumer: a message that cannot be decoded, has an
unknown type, violates its schema or keeps failing its handler goes to
`<topic>.dlq` with headers saying why, and the consumer carries on. A stream whose
next version is missing is held, never skipped: later versions wait in
`held_events` until the gap is filled (for example by replaying the DLQ).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import structlog
from sqlalchemy import and_, bindparam, delete, select, tuple_
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events import (
    EventDecodeError,
    EventEnvelope,
    EventPayload,
    EventRegistry,
    SchemaViolation,
    UnknownEventType,
    from_kafka,
    registry,
)
from tsunagu_events.binding import HEADER_PREFIX, Reason
from tsunagu_events.envelope import format_time, now
from tsunagu_events.topics import dlq_topic

from tsunagu_platform.kafka import OutgoingMessage, Publisher
from tsunagu_platform.logging import bound_to
from tsunagu_platform.metrics import BATCH_SECONDS, CONSUMED, DEAD_LETTERED, HELD
from tsunagu_platform.sql import BulkInsert, insert_ignoring_duplicates, insert_returning_new
from tsunagu_platform.tables import held_events, inbox, stream_positions

log = structlog.get_logger("tsunagu.consumer")

DLQ_HEADER_PREFIX = "dlq_"
TYPE_HEADER = HEADER_PREFIX + "type"


class IncomingRecord(NamedTuple):
    """A Kafka record, independent of the client library that fetched it.

    These three record types are named tuples, not frozen dataclasses: a rebuild makes one of each
    per event of a year, and a tuple is one allocation where a frozen dataclass is an object, its
    `__dict__` and an `object.__setattr__` call per field (building a record and its event: 26,219
    → 14,496 instructions, callgrind)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_consumer_record(cls, record: Any) -> IncomingRecord:
        headers = tuple(record.headers or ())
        for _name, value in headers:
            if value is None:  # rare: a header without a value reads as empty
                headers = tuple((k, v if v is not None else b"") for k, v in headers)
                break
        return cls(record.topic, record.partition, record.offset, record.key, record.value, headers)


class ReceivedEvent(NamedTuple):
    envelope: EventEnvelope
    payload: EventPayload
    record: IncomingRecord


class Rejected(NamedTuple):
    record: IncomingRecord
    reason: Reason
    detail: str


Handler = Callable[[AsyncConnection, ReceivedEvent], Awaitable[None]]


class BatchHandler(Protocol):
    """A handler that also sees each batch first: `prepare(conn, events)` is awaited in the batch's
    transaction with the events about to be handled (fresh, in order, of the handled types), so it
    can do in bulk what the per-event calls would do one by one (load keys, check references, append
    many streams); the per-event calls then find their work done. A batch that fails is retried
    event by event, each alone with its own `prepare`."""

    async def prepare(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None: ...

    async def __call__(self, conn: AsyncConnection, event: ReceivedEvent) -> None: ...


def decode_record(record: IncomingRecord, reg: EventRegistry = registry) -> ReceivedEvent | Rejected:
    """Turn a record into an event with its latest-version payload, or say why it cannot be one."""
    try:
        envelope = from_kafka(record.headers, record.value).envelope
        payload = reg.decode(envelope)
    except EventDecodeError as error:
        return Rejected(record, error.reason, error.detail)
    except UnknownEventType as error:
        return Rejected(record, "unknown_type", str(error))
    except SchemaViolation as error:
        return Rejected(record, "schema_violation", str(error))
    return ReceivedEvent(envelope, payload, record)


def public_detail(error: BaseException) -> str:
    """What may be said of a handler failure in a header or a log: the type, and a message only
    when the exception declares it safe (exception messages can quote personal data)."""
    safe = getattr(error, "public_detail", None)
    return f"{type(error).__name__}: {safe}" if isinstance(safe, str) else type(error).__name__


def is_infrastructure_failure(error: BaseException) -> bool:
    """Failures that say nothing about the message: retry later rather than dead-letter it."""
    if isinstance(error, OperationalError | InterfaceError | DisconnectionError | ConnectionError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class DeadLetters:
    """Publishes rejected records to `<topic>.dlq` unchanged, with `dlq_*` headers saying why."""

    def __init__(self, publisher: Publisher, consumer: str, clock: Callable[[], datetime] = now) -> None:
        self.publisher = publisher
        self.consumer = consumer
        self.clock = clock

    async def send(self, rejected: Sequence[Rejected]) -> None:
        if not rejected:
            return
        messages = []
        for item in rejected:
            record = item.record
            headers = [(k, v) for k, v in record.headers if not k.startswith(DLQ_HEADER_PREFIX)]
            headers += [
                ("dlq_reason", item.reason.encode()),
                ("dlq_detail", item.detail[:500].encode("utf-8", "replace")),
                ("dlq_consumer", self.consumer.encode()),
                ("dlq_original_topic", record.topic.encode()),
                ("dlq_original_partition", str(record.partition).encode()),
                ("dlq_original_offset", str(record.offset).encode()),
                ("dlq_at", format_time(self.clock()).encode()),
            ]
            messages.append(OutgoingMessage(dlq_topic(record.topic), record.key, record.value, headers))
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
        await self.publisher.publish(messages)


_ANY_HELD = select(held_events.c.version).where(held_events.c.consumer == bindparam("consumer")).limit(1)


POSITIONS = BulkInsert(
    stream_positions,
    ("consumer", "stream_id", "version"),
    on_conflict="update",
    keys=("consumer", "stream_id"),
    update=("version",),
)


class StreamSequencer:
    """Applies each stream's events in version order for one consumer.

    Versions at or below the stored position are replays and are dropped; a version
    beyond the next one is held in `held_events` until the missing ones arrive.
    """

    def __init__(self, consumer: str, reg: EventRegistry = registry) -> None:
        self.consumer = consumer
        self.registry = reg

    async def admit(self, conn: AsyncConnection, batch: Sequence[ReceivedEvent]) -> tuple[list[ReceivedEvent], int]:
        """Events to apply now, in order (released held ones included), and how many were replays."""
        streams = {e.envelope.streamid for e in batch}
        positions = await self._positions(conn, streams)
        start = dict(positions)
        ready: list[ReceivedEvent] = []
        waiting: dict[str, dict[int, ReceivedEvent]] = {}
        replays = 0
        for event in batch:
            stream, version = event.envelope.streamid, event.envelope.streamversion
            last = positions.get(stream, 0)
            if version <= last or version in waiting.get(stream, {}):
                replays += 1
            elif version == last + 1:
                ready.append(event)
                positions[stream] = version
                ready.extend(self._release(waiting.get(stream, {}), positions, stream))
            else:
                waiting.setdefault(stream, {})[version] = event
        advanced = [s for s in positions if positions[s] != start.get(s, 0)]
        ready.extend(await self._release_stored(conn, advanced, positions, waiting))
        await self._hold(conn, [e for held in waiting.values() for e in held.values()], positions)
        await POSITIONS.run(conn, [(self.consumer, s, v) for s, v in positions.items() if v != start.get(s, 0)])
        return ready, replays

    async def _release_stored(
        self,
        conn: AsyncConnection,
        advanced: Sequence[str],
        positions: dict[str, int],
        waiting: dict[str, dict[int, ReceivedEvent]],
    ) -> list[ReceivedEvent]:
        """Events held in the store that now follow on the advanced streams, in order (forgotten there);
        `positions` and `waiting` are brought up to date."""
        if not advanced:
            return []
        stored_held = await self._held(conn, advanced)
        ready: list[ReceivedEvent] = []
        released_from_store: list[tuple[str, int]] = []
        for stream in advanced:
            held = stored_held.get(stream, {})
            if not held:
                continue
            pool = {**held, **waiting.get(stream, {})}
            before = positions[stream]
            ready.extend(self._release(pool, positions, stream))
            released_from_store += [(stream, v) for v in range(before + 1, positions[stream] + 1) if v in held]
            waiting[stream] = {v: e for v, e in waiting.get(stream, {}).items() if v > positions[stream]}
        await self._forget_held(conn, released_from_store)
        return ready

    @staticmethod
    def _release(pool: dict[int, ReceivedEvent], positions: dict[str, int], stream: str) -> Iterable[ReceivedEvent]:
        released = []
        while positions[stream] + 1 in pool:
            positions[stream] += 1
            released.append(pool.pop(positions[stream]))
        return released

    async def _positions(self, conn: AsyncConnection, streams: Collection[str]) -> dict[str, int]:
        if not streams:
            return {}
        rows = await conn.execute(
            select(stream_positions.c.stream_id, stream_positions.c.version).where(
                stream_positions.c.consumer == self.consumer, stream_positions.c.stream_id.in_(list(streams))
            )
        )
        return {stream: int(version) for stream, version in rows}

    async def _held(self, conn: AsyncConnection, streams: Collection[str]) -> dict[str, dict[int, ReceivedEvent]]:
        if not streams:
            return {}
        # Gaps are rare: one index probe usually spares the IN (…) query over every stream of the batch.
        if await conn.scalar(_ANY_HELD, {"consumer": self.consumer}) is None:
            return {}
        rows = await conn.execute(
            select(held_events).where(
                held_events.c.consumer == self.consumer, held_events.c.stream_id.in_(list(streams))
            )
        )
        out: dict[str, dict[int, ReceivedEvent]] = {}
        for row in rows.mappings():
            record = IncomingRecord(
                topic=row["topic"],
                partition=-1,
                offset=-1,
                key=row["stream_id"].encode(),
                value=row["value"],
                headers=tuple((k, v.encode()) for k, v in json.loads(row["headers"])),
            )
            decoded = decode_record(record, self.registry)
            if isinstance(decoded, ReceivedEvent):
                out.setdefault(row["stream_id"], {})[int(row["version"])] = decoded
        return out

    async def _forget_held(self, conn: AsyncConnection, keys: Sequence[tuple[str, int]]) -> None:
        if not keys:
            return
        await conn.execute(
            delete(held_events).where(
                and_(
                    held_events.c.consumer == self.consumer,
                    tuple_(held_events.c.stream_id, held_events.c.version).in_(keys),
                )
            )
        )
        HELD.labels(self.consumer).dec(len(keys))
        log.info("consumer.gap_filled", consumer=self.consumer, released=len(keys))

    async def _hold(self, conn: AsyncConnection, events: Sequence[ReceivedEvent], positions: dict[str, int]) -> None:
        if not events:
            return
        rows = []
        for event in events:
            record = event.record
            rows.append(
                {
                    "consumer": self.consumer,
                    "stream_id": event.envelope.streamid,
                    "version": event.envelope.streamversion,
                    "topic": record.topic,
                    "headers": json.dumps([(k, v.decode("utf-8", "replace")) for k, v in record.headers]),
                    "value": record.value,
                    "held_at": now(),
                }
            )
            log.warning(
                "consumer.gap_held",
                consumer=self.consumer,
                stream=event.envelope.streamid,
                version=event.envelope.streamversion,
                expected=positions.get(event.envelope.streamid, 0) + 1,
                event_id=event.envelope.id,
            )
        await insert_ignoring_duplicates(conn, held_events, rows)
        HELD.labels(self.consumer).inc(len(rows))


class EventConsumer:
    """Applies a handler to each event exactly once in effect, whatever Kafka redelivers."""

    def __init__(
        self,
        name: str,
        engine: AsyncEngine,
        handler: Handler,
        dead_letters: DeadLetters,
        *,
        reg: EventRegistry = registry,
        handles: Collection[str] | None = None,
        check_versions: bool = True,
        max_attempts: int = 3,
        retry_delay: float = 0.05,
    ) -> None:
        self.name = name
        self.engine = engine
        self.handler = handler
        self.dead_letters = dead_letters
        self.registry = reg
        self.handles = set(handles) if handles is not None else None
        self.sequencer = StreamSequencer(name, reg) if check_versions else None
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay

    @staticmethod
    def inbox_key(envelope: EventEnvelope) -> str:
        """CloudEvents identity is (source, id): two agencies may reuse an id."""
        return f"{envelope.source} {envelope.id}"

    async def handle_batch(self, records: Sequence[IncomingRecord]) -> None:
        """Process a batch; returns once its effects are committed (then the offsets may be).

        Raises only for infrastructure failures (database or broker unreachable), in
        which case nothing was committed and the batch must be redelivered.
        """
        with structlog.contextvars.bound_contextvars(consumer=self.name):
            await self._handle_batch(records)

    def _concerns(self, record: IncomingRecord, only: Collection[str]) -> bool:
        """False for a record whose type header names an event this consumer does not handle although
        the registry knows it (a service's consumer of another service's topic sees every type there).

        Only for consumers without stream-version checks (their positions need every version) and
        only with `handles`: such a record has no effect here, so it is neither decoded nor given an
        inbox row; judging its payload is for the consumers that handle it. A record without the
        header, or of a type nobody registered, is decoded as always (and dead-lettered if bad).
        """
        for name, value in record.headers:
            if name == TYPE_HEADER:
                event_type = value.decode("utf-8", "replace")
                return event_type in only or not self.registry.knows(event_type)
        return True

    async def _handle_batch(self, records: Sequence[IncomingRecord]) -> None:
        started = time.perf_counter()
        decoded: list[ReceivedEvent] = []
        rejected: list[Rejected] = []
        if self.handles is not None and self.sequencer is None:
            only = self.handles
            concerning = [record for record in records if self._concerns(record, only)]
            if len(concerning) < len(records):
                CONSUMED.labels(self.name, "passed_over").inc(len(records) - len(concerning))
            records = concerning
        for record in records:
            item = decode_record(record, self.registry)
            (decoded if isinstance(item, ReceivedEvent) else rejected).append(item)  # type: ignore[arg-type]
        await self.dead_letters.send(rejected)
        try:
            async with self.engine.begin() as conn:
                await self._apply(conn, decoded)
        except Exception as error:
            if is_infrastructure_failure(error):
                raise
            log.info("consumer.batch_failed_retrying_singly", consumer=self.name, size=len(decoded))
            for event in decoded:
                await self._apply_alone(event)
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)

    async def _apply_alone(self, event: ReceivedEvent) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self.engine.begin() as conn:
                    await self._apply(conn, [event])
                return
            except Exception as error:
                if is_infrastructure_failure(error):
                    raise
                if attempt == self.max_attempts:
                    await self.dead_letters.send([Rejected(event.record, "handler_error", public_detail(error))])
                    return
                await asyncio.sleep(self.retry_delay * attempt)

    async def _apply(self, conn: AsyncConnection, batch: Sequence[ReceivedEvent]) -> None:
        fresh = await self._claim(conn, batch)
        duplicates = len(batch) - len(fresh)
        if self.sequencer is not None:
            fresh, replays = await self.sequencer.admit(conn, fresh)
            duplicates += replays
        handled = [e for e in fresh if self.handles is None or e.envelope.type in self.handles]
        prepare = getattr(self.handler, "prepare", None)
        if prepare is not None and handled:
            await prepare(conn, handled)
        for event in handled:
            with bound_to(event.envelope):
                await self.handler(conn, event)
        applied = len(handled)
        CONSUMED.labels(self.name, "applied").inc(applied)
        if duplicates:
            CONSUMED.labels(self.name, "duplicate").inc(duplicates)
            log.info("consumer.duplicates_ignored", consumer=self.name, count=duplicates)

    async def _claim(self, conn: AsyncConnection, batch: Sequence[ReceivedEvent]) -> list[ReceivedEvent]:
        """Write the inbox rows first, in this transaction; the rows that were new are the events to apply.

        One INSERT … ON CONFLICT DO NOTHING RETURNING is one index probe per event on both
        databases (a SELECT … IN (…) of a batch's keys was planned as a scan on PostgreSQL).
        Events the sequencer then holds keep their inbox row: when released from
        `held_events` they are applied without another inbox check.
        """
        if not batch:
            return []
        processed_at = now()
        rows = [
            {"consumer": self.name, "event_key": self.inbox_key(e.envelope), "processed_at": processed_at}
            for e in batch
        ]
        new_keys = set(await insert_returning_new(conn, inbox, rows, returning=inbox.c.event_key))
        fresh: list[ReceivedEvent] = []
        for row, event in zip(rows, batch, strict=True):
            key = row["event_key"]
            if key in new_keys:
                new_keys.discard(key)  # a key twice in one batch: the first occurrence only
                fresh.append(event)
        return fresh
