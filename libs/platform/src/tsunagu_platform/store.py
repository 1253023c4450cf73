"""The event store: append-only streams with optimistic concurrency, a hash chain and an outbox.

One command is one transaction: the new events, their chain hashes and the outbox
rows that will carry them to Kafka commit together or not at all, so a crash can
neither lose an event nor publish one that was never stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events import (
    GENESIS_HASH,
    Actor,
    EventEnvelope,
    EventPayload,
    new_event_id,
)
from tsunagu_events.chain import ChainBreak, chain_link, verify_chain
from tsunagu_events.envelope import format_time, now
from tsunagu_events.registry import schema_id

from tsunagu_platform.sql import BulkInsert, DriverQuery
from tsunagu_platform.tables import events, outbox


class ConcurrencyConflict(Exception):
    """Another writer appended to the stream since the caller read it."""

    def __init__(self, stream_id: str, expected: int, actual: int | None) -> None:
        where = f"now at version {actual}" if actual is not None else "taken by a concurrent writer"
        super().__init__(f"stream {stream_id} expected at version {expected}, {where}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class DuplicateEvent(Exception):
    """An event with this id is already stored."""


@dataclass(frozen=True)
class EventContext:
    """What all events of one command share: tenant, source, correlation, causation and actor."""

    tenant: str
    source: str
    correlation_id: str = field(default_factory=new_event_id)
    causation_id: str | None = None
    actor: Actor | None = None


@dataclass(frozen=True)
class NewEvent:
    """A payload about to be appended; the store assigns version and hashes."""

    payload: EventPayload
    id: str = field(default_factory=new_event_id)
    time: datetime | None = None
    subject: str | None = None


@dataclass(frozen=True)
class StreamAppend:
    """One stream's part of `EventStore.append_many`."""

    stream_id: str
    expected_version: int
    events: Sequence[NewEvent]
    context: EventContext


def serialise(envelope: EventEnvelope) -> str:
    return _dump(envelope.to_structured())


def _dump(structured: dict[str, Any]) -> str:
    return json.dumps(structured, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def deserialise(text: str) -> EventEnvelope:
    return EventEnvelope.model_validate_json(text)


# Built once: a statement built per call costs more in SQLAlchemy than SQLite spends running it.
_HEAD = DriverQuery(
    select(events.c.stream_version, events.c.chain_hash)
    .where(events.c.stream_id == bindparam("stream_id"))
    .order_by(events.c.stream_version.desc())
    .limit(1)
)
_STREAM = DriverQuery(
    select(events.c.envelope).where(events.c.stream_id == bindparam("stream_id")).order_by(events.c.stream_version)
)
_latest = events.alias("latest")
_HEADS = select(events.c.stream_id, events.c.stream_version, events.c.chain_hash).where(
    events.c.stream_id.in_(bindparam("stream_ids", expanding=True)),
    events.c.stream_version
    == select(func.max(_latest.c.stream_version)).where(_latest.c.stream_id == events.c.stream_id).scalar_subquery(),
)
_INSERT_EVENTS = BulkInsert(
    events,
    (
        "event_id",
        "stream_id",
        "stream_version",
        "event_type",
        "data_version",
        "tenant",
        "occurred_at",
        "recorded_at",
        "prev_hash",
        "chain_hash",
        "envelope",
    ),
)
_INSERT_OUTBOX = BulkInsert(outbox, ("event_id", "topic", "created_at", "attempts"))


# The fields `_build` gives an envelope; the others keep their defaults.
_GIVEN = frozenset(
    {
        "id",
        "source",
        "type",
        "time",
        "subject",
        "dataschema",
        "tenant",
        "streamid",
        "streamversion",
        "correlationid",
        "causationid",
        "actoragency",
        "actorstaff",
        "dataversion",
        "prevhash",
        "data",
    }
)
_DEFAULTED = {name: f.default for name, f in EventEnvelope.model_fields.items() if name not in _GIVEN}
_CONSTANT = {name: value for name, value in _DEFAULTED.items() if value is not None}
# The structured form is spelled out from the fields (below) only while every other field has a
# plain default: the envelope's own `to_structured` walks its fields and formats the time again
# for every event, about a fifth of building one.
_STRUCTURED_DIRECTLY = EventEnvelope.model_fields.keys() >= _GIVEN and all(
    value is None or isinstance(value, str | int) for value in _DEFAULTED.values()
)


def _link(previous: str, fields: dict[str, Any], time_text: str) -> tuple[str, str] | None:
    """The chain hash and canonical text of an envelope with these fields (`time` as `time_text`),
    as `chain_link(previous, envelope.to_structured())` gives them: the attributes that are set,
    the defaults and the data. None when a value cannot be encoded: the envelope's validation
    then says what is wrong."""
    structured = {**_CONSTANT, **{name: value for name, value in fields.items() if value is not None}}
    structured["time"] = time_text
    try:
        return chain_link(previous, structured)
    except (TypeError, ValueError):
        return None


async def read_stream(conn: AsyncConnection, stream_id: str) -> list[EventEnvelope]:
    """A whole stream in order, on the caller's connection (load, decide and append in one transaction)."""
    return [deserialise(text) for (text,) in await _STREAM.rows(conn, {"stream_id": stream_id})]


class EventStore:
    """Streams of one service, stored in that service's own database."""

    def __init__(self, engine: AsyncEngine, *, topic: str, clock: Callable[[], datetime] = now) -> None:
        self.engine = engine
        self.topic = topic
        self.clock = clock
        self._formatted: tuple[datetime | None, str] = (None, "")

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        new_events: Sequence[NewEvent],
        context: EventContext,
        *,
        conn: AsyncConnection | None = None,
    ) -> list[EventEnvelope]:
        """Append after `expected_version` (0 for a new stream) or raise ConcurrencyConflict.

        Pass `conn` to join the caller's transaction (for read models updated with the events).
        """
        if not new_events:
            return []
        try:
            if conn is not None:
                return await self._append(conn, stream_id, expected_version, new_events, context)
            async with self.engine.begin() as own:
                return await self._append(own, stream_id, expected_version, new_events, context)
        except IntegrityError as error:
            text = str(error.orig).lower()
            if "event_id" in text:
                raise DuplicateEvent(str(error.orig)) from None
            raise ConcurrencyConflict(stream_id, expected_version, None) from None

    async def _append(
        self,
        conn: AsyncConnection,
        stream_id: str,
        expected_version: int,
        new_events: Sequence[NewEvent],
        context: EventContext,
    ) -> list[EventEnvelope]:
        head = await _HEAD.rows(conn, {"stream_id": stream_id})
        current, previous = (head[0][0], head[0][1]) if head else (0, GENESIS_HASH)
        if current != expected_version:
            raise ConcurrencyConflict(stream_id, expected_version, current)
        stored, event_rows, outbox_rows = self._build(stream_id, current, previous, new_events, context, self.clock())
        await _INSERT_EVENTS.run(conn, event_rows)
        await _INSERT_OUTBOX.run(conn, outbox_rows)
        return stored

    def _build(
        self,
        stream_id: str,
        current: int,
        previous: str,
        new_events: Sequence[NewEvent],
        context: EventContext,
        recorded_at: datetime,
    ) -> tuple[list[EventEnvelope], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The envelopes after version `current` (chained from `previous`) and their event and outbox rows."""
        stored: list[EventEnvelope] = []
        event_rows: list[tuple[Any, ...]] = []
        outbox_rows: list[tuple[Any, ...]] = []
        for offset, item in enumerate(new_events, start=1):
            payload = item.payload
            moment = item.time or recorded_at
            fields: dict[str, Any] = {
                "id": item.id,
                "source": context.source,
                "type": payload.event_type,
                "time": moment,
                "subject": item.subject or stream_id,
                "dataschema": schema_id(payload.event_type, payload.version),
                "tenant": context.tenant,
                "streamid": stream_id,
                "streamversion": current + offset,
                "correlationid": context.correlation_id,
                "causationid": context.causation_id,
                "actoragency": context.actor.agency if context.actor else None,
                "actorstaff": context.actor.staff if context.actor else None,
                "dataversion": payload.version,
                "prevhash": previous,
                "data": payload.to_data(),
            }
            link = None
            if _STRUCTURED_DIRECTLY and moment.tzinfo is not None:
                # The events of a command or a batch share their recording time: formatted once.
                formatted = self._formatted
                if moment is not formatted[0]:
                    formatted = self._formatted = (moment, format_time(moment))
                link = _link(previous, fields, formatted[1])
            if link is not None:
                digest, canonical = link
                envelope = EventEnvelope(**fields, chainhash=digest)
            else:
                draft = EventEnvelope(**fields)
                digest, canonical = chain_link(previous, draft.to_structured())
                envelope = draft.model_copy(update={"chainhash": digest})
            # The stored text is the canonical text with the two hashes in front: the same JSON
            # object as the structured form, without encoding it a second time.
            text = '{"chainhash":"' + digest + '","prevhash":"' + previous + '",' + canonical[1:]
            previous = digest
            stored.append(envelope)
            event_rows.append(
                (
                    envelope.id,
                    stream_id,
                    envelope.streamversion,
                    envelope.type,
                    envelope.dataversion,
                    envelope.tenant,
                    envelope.time,
                    recorded_at,
                    envelope.prevhash,
                    digest,
                    text,
                )
            )
            outbox_rows.append((envelope.id, self.topic, recorded_at, 0))
        return stored, event_rows, outbox_rows

    async def append_many(
        self, conn: AsyncConnection, appends: Sequence[StreamAppend]
    ) -> list[list[EventEnvelope] | ConcurrencyConflict]:
        """Append to many streams in the caller's transaction with one head query and one insert per table.

        For batch consumers that start or extend hundreds of streams at once. Each append is
        checked against its stream's head like `append`; one that is not at its expected
        version gets a ConcurrencyConflict in its place and writes nothing, the others are
        written. Two appends to one stream in a call chain onto each other in order.
        """
        heads = await self._heads(conn, sorted({a.stream_id for a in appends}))
        recorded_at = self.clock()
        results: list[list[EventEnvelope] | ConcurrencyConflict] = []
        event_rows: list[tuple[Any, ...]] = []
        outbox_rows: list[tuple[Any, ...]] = []
        for item in appends:
            current, previous = heads.get(item.stream_id, (0, GENESIS_HASH))
            if current != item.expected_version:
                results.append(ConcurrencyConflict(item.stream_id, item.expected_version, current))
                continue
            if not item.events:
                results.append([])
                continue
            stored, rows, boxes = self._build(item.stream_id, current, previous, item.events, item.context, recorded_at)
            heads[item.stream_id] = (stored[-1].streamversion, stored[-1].chainhash or GENESIS_HASH)
            results.append(stored)
            event_rows += rows
            outbox_rows += boxes
        if event_rows:
            try:
                await _INSERT_EVENTS.run(conn, event_rows)
            except IntegrityError as error:
                # A writer of another process got in between the head query and the insert.
                if "event_id" in str(error.orig).lower():
                    raise DuplicateEvent(str(error.orig)) from None
                raise ConcurrencyConflict(str(event_rows[0][1]), 0, None) from None
            await _INSERT_OUTBOX.run(conn, outbox_rows)
        return results

    async def _heads(self, conn: AsyncConnection, stream_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        heads: dict[str, tuple[int, str]] = {}
        for start in range(0, len(stream_ids), 500):
            rows = await conn.execute(_HEADS, {"stream_ids": list(stream_ids[start : start + 500])})
            heads.update({stream_id: (int(version), chain) for stream_id, version, chain in rows})
        return heads

    async def current_version(self, stream_id: str) -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(select(func.max(events.c.stream_version)).where(events.c.stream_id == stream_id))
        return int(value or 0)

    async def read(
        self,
        stream_id: str,
        *,
        up_to_version: int | None = None,
        as_of: datetime | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[EventEnvelope]:
        """A stream in order: whole, up to a version, or as it stood at `as_of` (by recording time).

        Pass `conn` to read inside the command's own transaction (load, decide, append on one connection).
        """
        if up_to_version is None and as_of is None:
            if conn is not None:
                return await read_stream(conn, stream_id)
            async with self.engine.connect() as own:
                return await read_stream(own, stream_id)
        query = select(events.c.envelope).where(events.c.stream_id == stream_id)
        if up_to_version is not None:
            query = query.where(events.c.stream_version <= up_to_version)
        if as_of is not None:
            query = query.where(events.c.recorded_at <= as_of)
        query = query.order_by(events.c.stream_version)
        if conn is not None:
            rows = (await conn.execute(query)).scalars().all()
        else:
            async with self.engine.connect() as own:
                rows = (await own.execute(query)).scalars().all()
        return [deserialise(text) for text in rows]

    async def stream_ids(self) -> list[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(events.c.stream_id).distinct().order_by(events.c.stream_id))
            return [row[0] for row in rows]

    async def verify(self, stream_id: str) -> ChainBreak | None:
        """The first broken link of a stream, reading the stored envelopes as they are."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(events.c.envelope, events.c.chain_hash)
                    .where(events.c.stream_id == stream_id)
                    .order_by(events.c.stream_version)
                )
            ).all()
        stored: list[EventEnvelope] = []
        for position, (text, column_hash) in enumerate(rows, start=1):
            try:
                envelope = deserialise(text)
            except ValueError:
                return ChainBreak(stream_id, position, "?", "stored envelope is no longer a valid event")
            if envelope.chainhash != column_hash:
                # The indexed column and the envelope disagree: one of them was edited.
                return ChainBreak(stream_id, envelope.streamversion, envelope.id, "chain_hash column was altered")
            stored.append(envelope)
        return verify_chain(stored)

    async def verify_all(self) -> list[ChainBreak]:
        breaks = []
        for stream_id in await self.stream_ids():
            found = await self.verify(stream_id)
            if found is not None:
                breaks.append(found)
        return breaks
