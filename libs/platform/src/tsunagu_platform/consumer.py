"""Idempotent event consumers: inbox, stream-version ordering, bounded retries and a DLQ.

Kafka delivers at least once and the relay publishes at least once, so every
consumer must make redelivery harmless. A batch's effects, its inbox rows and its
stream positions commit in one database transaction; only then is the Kafka offset
committed. A crash anywhere before that commit redelivers the batch, and the inbox
turns the redelivery into a no-op. Nothing is acknowledged before it is processed
(faststream's default ACK_FIRST would be at-most-once).

Poison messages must not stop a consumer: a message that cannot be decoded, has an
unknown type, violates its schema, belongs to another tenant, breaks its stream's hash
chain or keeps failing its handler goes to `<topic>.dlq` with headers saying why
(dlq.py: sending a dead letter never blocks), and the consumer carries on. A stream whose
next version is missing is held, never skipped: later versions wait in
`held_events` until the gap is filled (for example by replaying the DLQ).

A batch that fails for one bad event is not retried event by event: the handler may
refuse bad events up front (`refuse`), and what it cannot foresee is isolated by halving
the batch, so a few bad events cost a few more transactions, not one per event.

A versioned consumer applies an event only when its `prevhash` is the `chainhash` of the
last event it applied of that stream (chain.py): an event written to a topic by anyone
but the owning service's relay, with made-up hashes, is a `chain_break` and is
dead-lettered instead of applied.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
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
from tsunagu_events.chain import GENESIS_HASH
from tsunagu_events.envelope import now

from tsunagu_platform.dlq import DLQ_HEADER_PREFIX, DeadLetters
from tsunagu_platform.logging import bound_to
from tsunagu_platform.metrics import BATCH_SECONDS, CONSUMED, HELD, STALLED
from tsunagu_platform.sql import BulkInsert, insert_ignoring_duplicates, insert_returning_new
from tsunagu_platform.tables import held_events, inbox, stream_positions

__all__ = ["DLQ_HEADER_PREFIX", "DeadLetters", "EventConsumer", "IncomingRecord", "ReceivedEvent", "Rejected"]

log = structlog.get_logger("tsunagu.consumer")

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
    many streams); the per-event calls then find their work done. A batch that fails is halved
    and each half tried in its own transaction (with its own `prepare`) until the failing event
    is alone."""

    async def prepare(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None: ...

    async def __call__(self, conn: AsyncConnection, event: ReceivedEvent) -> None: ...


class RefusingHandler(Protocol):
    """A handler that can tell bad events before applying any: `refuse(conn, events)` is awaited in the
    batch's transaction with the fresh events (before the sequencer and `prepare`) and returns those it
    will not apply, each with its reason and a detail free of personal data. They are dead-lettered
    after the commit (no inbox row, so a replay once fixed is applied); the rest of the batch is applied
    together. This is what keeps a batch with a few bad events at nearly the rate of a clean one."""

    async def refuse(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> list[Rejected]: ...


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


def is_refusal(error: BaseException) -> bool:
    """A handler's refusal of the event on its merits (a domain rule, an erased person): such errors
    declare a `public_detail`, and trying the same event again cannot change the answer, so it is
    dead-lettered at once instead of after `max_attempts` tries and their pauses."""
    return isinstance(getattr(error, "public_detail", None), str)


def is_infrastructure_failure(error: BaseException) -> bool:
    """Failures that say nothing about the message: retry later rather than dead-letter it."""
    if isinstance(error, OperationalError | InterfaceError | DisconnectionError | ConnectionError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


_ANY_HELD = select(held_events.c.version).where(held_events.c.consumer == bindparam("consumer")).limit(1)


POSITIONS = BulkInsert(
    stream_positions,
    ("consumer", "stream_id", "version"),
    on_conflict="update",
    keys=("consumer", "stream_id"),
    update=("version",),
)
CHAINED_POSITIONS = BulkInsert(
    stream_positions,
    ("consumer", "stream_id", "version", "chainhash"),
    on_conflict="update",
    keys=("consumer", "stream_id"),
    update=("version", "chainhash"),
)
UNKNOWN_HEAD = ""
"""The chain hash of a stored position that has none (written before hashes were kept): the next event is trusted."""


def links(event: ReceivedEvent, head: str | None) -> bool:
    """Whether the event follows `head`, the chain hash of the last event applied of its stream
    (None: none applied yet, so it must follow the genesis hash; UNKNOWN_HEAD: not known, trusted).
    An event without hashes never links: every event of a service's stream carries them."""
    envelope = event.envelope
    if envelope.chainhash is None or envelope.prevhash is None:
        return False
    if head is None:
        return envelope.prevhash == GENESIS_HASH
    return head == UNKNOWN_HEAD or envelope.prevhash == head


def chain_break(event: ReceivedEvent, head: str | None) -> Rejected:
    envelope = event.envelope
    if envelope.prevhash is None or envelope.chainhash is None:
        detail = f"{envelope.streamid} v{envelope.streamversion} carries no hash chain"
    else:
        detail = f"{envelope.streamid} v{envelope.streamversion} does not link to the last event applied"
    log.error(
        "consumer.chain_break",
        stream=envelope.streamid,
        version=envelope.streamversion,
        event_id=envelope.id,
        expected_prevhash=head or GENESIS_HASH,
        prevhash=envelope.prevhash,
    )
    return Rejected(event.record, "chain_break", detail)


class StreamSequencer:
    """Applies each stream's events in version order for one consumer, each only if it links to the last.

    Versions at or below the stored position are replays and are dropped; a version
    beyond the next one is held in `held_events` until the missing ones arrive. The next
    version is applied only when its `prevhash` is the stored `chainhash` of the last one
    applied (`links`); one that does not is a chain break, handed back to be dead-lettered,
    and the stream waits for an event that does link.
    """

    def __init__(self, consumer: str, reg: EventRegistry = registry) -> None:
        self.consumer = consumer
        self.registry = reg

    async def admit(
        self, conn: AsyncConnection, batch: Sequence[ReceivedEvent], broken: list[Rejected] | None = None
    ) -> tuple[list[ReceivedEvent], int]:
        """Events to apply now, in order (released held ones included), and how many were replays.

        Events that break their stream's chain are appended to `broken` (and not applied)."""
        broken = broken if broken is not None else []
        streams = {e.envelope.streamid for e in batch}
        positions, hashes = await self._heads(conn, streams)
        start = dict(positions)
        ready: list[ReceivedEvent] = []
        waiting: dict[str, dict[int, ReceivedEvent]] = {}
        replays = 0
        for event in batch:
            envelope = event.envelope
            stream, version = envelope.streamid, envelope.streamversion
            last = positions.get(stream, 0)
            if version <= last or (stream in waiting and version in waiting[stream]):
                replays += 1
            elif version == last + 1:
                head = hashes.get(stream)
                # `links(event, head)`, inlined: this runs for every event a versioned consumer applies
                prevhash, chainhash = envelope.prevhash, envelope.chainhash
                if (
                    chainhash is None
                    or prevhash is None
                    or (prevhash != (GENESIS_HASH if head is None else head) and head != UNKNOWN_HEAD)
                ):
                    broken.append(chain_break(event, head))
                    continue
                ready.append(event)
                positions[stream] = version
                hashes[stream] = chainhash
                if stream in waiting:
                    ready.extend(self._release(waiting[stream], positions, stream, hashes, broken))
            else:
                waiting.setdefault(stream, {})[version] = event
        advanced = [s for s in positions if positions[s] != start.get(s, 0)]
        ready.extend(await self._release_stored(conn, advanced, positions, waiting, hashes, broken))
        await self._hold(conn, [e for held in waiting.values() for e in held.values()], positions)
        await CHAINED_POSITIONS.run(
            conn, [(self.consumer, s, v, hashes.get(s)) for s, v in positions.items() if v != start.get(s, 0)]
        )
        return ready, replays

    async def _release_stored(
        self,
        conn: AsyncConnection,
        advanced: Sequence[str],
        positions: dict[str, int],
        waiting: dict[str, dict[int, ReceivedEvent]],
        hashes: dict[str, str | None] | None = None,
        broken: list[Rejected] | None = None,
    ) -> list[ReceivedEvent]:
        """Events held in the store that now follow on the advanced streams, in order (forgotten there);
        `positions` and `waiting` are brought up to date. With `hashes`, each must link (else it goes to
        `broken` and is forgotten too)."""
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
            already_broken = len(broken) if broken is not None else 0
            ready.extend(self._release(pool, positions, stream, hashes, broken))
            released_from_store += [(stream, v) for v in range(before + 1, positions[stream] + 1) if v in held]
            dropped = positions[stream] + 1 if broken is not None and len(broken) > already_broken else None
            if dropped in held:
                released_from_store.append((stream, dropped))
            waiting[stream] = {
                v: e for v, e in waiting.get(stream, {}).items() if v > positions[stream] and v != dropped
            }
        await self._forget_held(conn, released_from_store)
        return ready

    @staticmethod
    def _release(
        pool: dict[int, ReceivedEvent],
        positions: dict[str, int],
        stream: str,
        hashes: dict[str, str | None] | None = None,
        broken: list[Rejected] | None = None,
    ) -> Iterable[ReceivedEvent]:
        released = []
        while positions[stream] + 1 in pool:
            if hashes is not None:
                following = pool[positions[stream] + 1]
                if not links(following, hashes.get(stream)):
                    pool.pop(positions[stream] + 1)
                    if broken is not None:
                        broken.append(chain_break(following, hashes.get(stream)))
                    break
                hashes[stream] = following.envelope.chainhash
            positions[stream] += 1
            released.append(pool.pop(positions[stream]))
        return released

    async def _heads(
        self, conn: AsyncConnection, streams: Collection[str]
    ) -> tuple[dict[str, int], dict[str, str | None]]:
        """The stored position of each stream and the chain hash of the event there (UNKNOWN_HEAD if not kept)."""
        if not streams:
            return {}, {}
        rows = await conn.execute(
            select(stream_positions.c.stream_id, stream_positions.c.version, stream_positions.c.chainhash).where(
                stream_positions.c.consumer == self.consumer, stream_positions.c.stream_id.in_(list(streams))
            )
        )
        positions: dict[str, int] = {}
        hashes: dict[str, str | None] = {}
        for stream, version, chainhash in rows:
            positions[stream] = int(version)
            hashes[stream] = chainhash or UNKNOWN_HEAD
        return positions, hashes

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


SINGLY = 8
"""A failed part of a batch this small is applied event by event rather than halved again."""


class EventConsumer:
    """Applies a handler to each event exactly once in effect, whatever Kafka redelivers.

    `tenant`: events of any other tenant are dead-lettered (`foreign_tenant`). `strict_types`: an event
    of a type outside `handles` is dead-lettered as `unknown_type` instead of passed over (for topics
    with a published contract of what may be sent, like the agencies' inbound topic). `stall_after`:
    seconds a batch may take, or a consumer may keep failing, before `stalled()` says so (readiness).
    """

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
        tenant: str | None = None,
        strict_types: bool = False,
        stall_after: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.engine = engine
        self.handler = handler
        self.dead_letters = dead_letters
        if dead_letters.engine is None:
            dead_letters.engine = engine  # where letters the broker will not take are kept
        self.registry = reg
        self.handles = set(handles) if handles is not None else None
        self.sequencer = StreamSequencer(name, reg) if check_versions else None
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.tenant = tenant
        self.strict_types = strict_types and self.handles is not None
        self.stall_after = stall_after
        self.clock = clock
        self._busy_since: float | None = None
        self._failing_since: float | None = None

    @staticmethod
    def inbox_key(envelope: EventEnvelope) -> str:
        """CloudEvents identity is (source, id): two agencies may reuse an id."""
        return f"{envelope.source} {envelope.id}"

    def stalled(self) -> bool:
        """True while the current batch has run, or the consumer has kept failing, longer than `stall_after`
        (it is not advancing: a database gone, a batch redelivered over and over); sets the metric."""
        since = [t for t in (self._busy_since, self._failing_since) if t is not None]
        stalled = bool(since) and self.clock() - min(since) > self.stall_after
        STALLED.labels(self.name).set(1 if stalled else 0)
        return stalled

    async def handle_batch(self, records: Sequence[IncomingRecord]) -> None:
        """Process a batch; returns once its effects are committed (then the offsets may be).

        Raises only for infrastructure failures (database or broker unreachable), in
        which case nothing was committed and the batch must be redelivered.
        """
        self._busy_since = self.clock()
        try:
            with structlog.contextvars.bound_contextvars(consumer=self.name):
                await self._handle_batch(records)
        except BaseException:
            if self._failing_since is None:
                self._failing_since = self._busy_since
            raise
        else:
            self._failing_since = None
        finally:
            self._busy_since = None

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

    def _refusal(self, event: ReceivedEvent) -> Rejected | None:
        """Why a decoded event is not for this consumer at all, if it is not."""
        envelope = event.envelope
        if self.tenant is not None and envelope.tenant != self.tenant:
            return Rejected(event.record, "foreign_tenant", f"tenant {envelope.tenant} is not {self.tenant}")
        if self.strict_types and self.handles is not None and envelope.type not in self.handles:
            return Rejected(event.record, "unknown_type", f"{envelope.type} is not accepted on {event.record.topic}")
        return None

    async def _handle_batch(self, records: Sequence[IncomingRecord]) -> None:
        started = time.perf_counter()
        decoded: list[ReceivedEvent] = []
        rejected: list[Rejected] = []
        if self.handles is not None and self.sequencer is None and not self.strict_types:
            only = self.handles
            concerning = [record for record in records if self._concerns(record, only)]
            if len(concerning) < len(records):
                CONSUMED.labels(self.name, "passed_over").inc(len(records) - len(concerning))
            records = concerning
        screened = self.tenant is not None or self.strict_types
        for record in records:
            item = decode_record(record, self.registry)
            if type(item) is ReceivedEvent:
                refusal = self._refusal(item) if screened else None
                if refusal is None:
                    decoded.append(item)
                else:
                    rejected.append(refusal)
            else:
                rejected.append(item)  # type: ignore[arg-type]
        await self.dead_letters.send(rejected)
        await self._apply_isolating(decoded)
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)

    async def _apply_isolating(self, events: Sequence[ReceivedEvent]) -> None:
        """Apply `events` in one transaction; if that fails because of an event, halve and try each half
        (in order) until a failing part is at most SINGLY events, then apply those one by one (each
        retried, and dead-lettered if it keeps failing).

        With one bad event in n this is about 2·log2(n/SINGLY) + SINGLY transactions instead of n; the
        events the handler refuses up front (`RefusingHandler`) and chain breaks cost none."""
        try:
            async with self.engine.begin() as conn:
                letters = await self._apply(conn, events)
        except Exception as error:
            if is_infrastructure_failure(error):
                raise
            if len(events) <= SINGLY:
                for event in events:
                    await self._apply_alone(event)
                return
            log.info("consumer.batch_failed_halving", consumer=self.name, size=len(events))
            middle = len(events) // 2
            await self._apply_isolating(events[:middle])
            await self._apply_isolating(events[middle:])
            return
        await self.dead_letters.send(letters)

    async def _apply_alone(self, event: ReceivedEvent) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self.engine.begin() as conn:
                    letters = await self._apply(conn, [event])
                await self.dead_letters.send(letters)
                return
            except Exception as error:
                if is_infrastructure_failure(error):
                    raise
                if attempt == self.max_attempts or is_refusal(error):
                    await self.dead_letters.send([Rejected(event.record, "handler_error", public_detail(error))])
                    return
                await asyncio.sleep(self.retry_delay * attempt)

    async def _apply(self, conn: AsyncConnection, batch: Sequence[ReceivedEvent]) -> list[Rejected]:
        """Apply a batch in `conn`; returns the events to dead-letter once it commits (refused, chain breaks)."""
        fresh = await self._claim(conn, batch)
        duplicates = len(batch) - len(fresh)
        letters: list[Rejected] = []
        refuse = getattr(self.handler, "refuse", None)
        if refuse is not None and fresh:
            refused = await refuse(conn, fresh)
            if refused:
                letters.extend(refused)
                refused_records = {id(r.record) for r in refused}
                fresh = [e for e in fresh if id(e.record) not in refused_records]
        if self.sequencer is not None:
            fresh, replays = await self.sequencer.admit(conn, fresh, letters)
            duplicates += replays
        if letters:
            await self._unclaim(conn, letters)
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
        return letters

    async def _unclaim(self, conn: AsyncConnection, letters: Sequence[Rejected]) -> None:
        """Drop the inbox rows of events that are dead-lettered instead of applied, so a replay is applied."""
        keys: list[str] = []
        for letter in letters:
            decoded = decode_record(letter.record, self.registry)
            if isinstance(decoded, ReceivedEvent):
                keys.append(self.inbox_key(decoded.envelope))
        if keys:
            await conn.execute(delete(inbox).where(inbox.c.consumer == self.name, inbox.c.event_key.in_(keys)))

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
