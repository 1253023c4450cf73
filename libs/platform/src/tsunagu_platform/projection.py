"""Projections: read models rebuilt from the topics, swapped in only when caught up.

A projection's tables carry a generation suffix (`timeline_g3`). The live
generation is named in `projection_state`; readers always query that one. A rebuild
fills the next generation from the start of the topics while the live one keeps
answering, and switches `projection_state` in one transaction once it has caught
up, so a reader never sees a half-built projection. Each generation keeps its own
checkpoints (next offset per partition) in the same transaction as its effects,
so a crashed runner resumes exactly where its last commit ended, and its own
stream positions, so a republished event is not counted twice.

A rebuild replays a whole year, so the runner's per-event overhead is kept out of
SQLAlchemy's per-row machinery: its bookkeeping rows (stream positions, checkpoints)
and a projection's bulk rows go to the driver through statements compiled once
(`BulkInsert`: an executemany on SQLite, one statement of arrays on PostgreSQL), the
runner remembers the stream positions it has written instead of reading them back for
every batch, a rebuild commits many batches at once (`REBUILD_COMMIT_EVENTS`): still
effects, positions and checkpoints in one transaction, so a crash only sends the runner
back to its last commit; and it decodes the next batch while the database writes this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, cast

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import MetaData, Table, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events import GENESIS_HASH, EventRegistry, registry
from tsunagu_events.envelope import now

from tsunagu_platform.consumer import POSITIONS, IncomingRecord, ReceivedEvent, Rejected, StreamSequencer, decode_record
from tsunagu_platform.db import WAL_AUTOCHECKPOINT_PAGES
from tsunagu_platform.kafka import consumer_options, end_distance
from tsunagu_platform.metrics import (
    PROJECTION_CHAIN_BREAKS,
    PROJECTION_EVENTS,
    PROJECTION_LAG,
    PROJECTION_TOPIC_RESETS,
)
from tsunagu_platform.sql import BulkInsert, insert_ignoring_duplicates
from tsunagu_platform.tables import (
    held_events,
    projection_checkpoints,
    projection_state,
    projection_topics,
    stream_positions,
)
from tsunagu_platform.topic_identity import TopicIdentity, describe_topics

log = structlog.get_logger("tsunagu.projection")

Tables = Mapping[str, Table]


class Projection(Protocol):
    """A read model: its tables for a generation, and how one event changes them.

    A projection may also define `apply_batch(conn, tables, events)`; the runner then
    hands it each fetched batch at once (bulk statements instead of per-event round
    trips), and `apply` remains the per-event definition both must agree with.
    """

    name: str
    topics: Sequence[str]

    def define(self, metadata: MetaData, generation: int) -> Tables: ...

    async def apply(self, conn: AsyncConnection, tables: Tables, event: ReceivedEvent) -> None: ...


class BatchProjection(Projection, Protocol):
    async def apply_batch(self, conn: AsyncConnection, tables: Tables, events: Sequence[ReceivedEvent]) -> None: ...


REBUILD_COMMIT_EVENTS = 50_000
REBUILD_COMMIT_SECONDS = 1.0
"""A rebuild commits its batches together, once this many events are applied or this long after the
transaction began, whichever comes first. Every commit writes each page the transaction touched:
a projection over many streams (every consultation is one) inserts keys all over its indexes and
the runner's stream positions, so a commit of 5,000 events rewrote nearly as many pages as one of
several times that (docs/benchmarks/reporting.md). The price: the writer connection (on SQLite the
process's only one, which `ProjectionManager.tables` also takes) is held that long at a time, and
a crash loses at most that much work, which the next runner redoes from the last commit."""

REBUILD_WAL_PAGES = 100_000
"""On SQLite, a rebuild's transactions leave up to this many pages (about 400 MB) in the WAL before
a commit checkpoints them, instead of SQLite's 1,000: checkpointing after each of a rebuild's commits
copied its pages back into the database file, where the next commits change many of them again
(annual tables 17.2k → 18.8k events/s before ids were time-ordered, docs/benchmarks/reporting.md). The setting belongs
to the connection, so it is raised when a rebuild transaction begins and restored when it ends; the
switch's commit then checkpoints once, and `db.WAL_SIZE_LIMIT_BYTES` shrinks the file again."""

_ACTIVE = select(projection_state.c.active_generation).where(projection_state.c.projection == bindparam("projection"))

DECODE_SLICE = 500
"""Records a batch read ahead decodes before giving the loop back (about 10 ms of CPU)."""

FILL_MS = 20
"""How long a runner waits for more records to fill a batch: brokers that hand out small fetches
(Tansu: tens of records) would otherwise cost one transaction per fetch."""


@dataclass
class Progress:
    """What a long rebuild shows: events done, rate and estimated time left."""

    projection: str
    generation: int
    events_done: int
    remaining: int
    rate: float

    @property
    def eta_seconds(self) -> float | None:
        return self.remaining / self.rate if self.rate > 0 else None

    def describe(self) -> str:
        eta = f"{self.eta_seconds:.0f}s" if self.eta_seconds is not None else "?"
        return (
            f"{self.projection} g{self.generation}: {self.events_done} events, "
            f"{self.rate:,.0f}/s, {self.remaining} left, eta {eta}"
        )


TOPIC_CHECK_SECONDS = 1.0
"""How often a following runner asks whether its topics are still the ones it started on."""

_TOPIC_IDS = BulkInsert(
    projection_topics,
    ("projection", "generation", "topic", "topic_id"),
    on_conflict="update",
    keys=("projection", "generation", "topic"),
    update=("topic_id",),
)

_CHECKPOINTS = BulkInsert(
    projection_checkpoints,
    ("projection", "generation", "topic", "partition", "next_offset"),
    on_conflict="update",
    keys=("projection", "generation", "topic", "partition"),
    update=("next_offset",),
)


class RunnerSequencer(StreamSequencer):
    """A `StreamSequencer` that remembers the stream positions its runner has committed.

    Only the runner of a generation writes that generation's positions, so what it
    committed is what is stored: a batch reads back only the streams it has not seen,
    and none at all when the generation started with no positions (a rebuild from the
    start). `complete` says that every stored position is in `known`. The runner must
    call `committed` once a batch's positions are written in its transaction (later batches
    of a transaction left open build on them) and `forget` when it cannot be sure (a batch
    or commit that failed, another writer's checkpoints). Held events (gaps) are handled as
    by `StreamSequencer`.

    It applies an event only when the event links to its stream's hash chain, as consumers
    do (issue 14 §6): its `prevhash` must be the `chainhash` of the last event applied of that
    stream, or the genesis hash for a stream's first event. An event that does not (written to
    a topic by someone other than the owning service's relay, with made-up hashes) is left
    out, visibly (`broken`), and does not advance its stream, so the genuine event of that
    version is still applied when it comes. The chain heads are kept in memory only, for the
    streams this runner applied an event of: a rebuild checks every event from each stream's
    first; a runner that resumes trusts the first event it sees of a stream applied before it.
    A head is kept as `hash()` of its chain hash, 8 bytes a stream: keeping the strings held a
    rebuild's decoded hashes alive (timelines rebuild +10 % CPU per event, same-run A/B). A chance
    match is 2⁻⁶⁴; a forger who copies the head's chain hash links to it anyway, with the strings
    too: the chain proves that events follow each other, not who wrote them (broker ACLs will).
    """

    LIMIT = 1_000_000
    """Positions remembered at most; past that the memory is dropped and misses are read again."""

    def __init__(self, consumer: str, reg: EventRegistry = registry) -> None:
        super().__init__(consumer, reg)
        self.known: dict[str, int] = {}
        self.complete: bool | None = None  # None: not looked at yet
        self.heads: dict[str, int] = {}  # stream → hash() of its head's chainhash (see `_links`)
        self.broken: list[ReceivedEvent] = []  # chain breaks of the last batch admitted
        self._new_heads: dict[str, int] = {}
        self._positions_now: dict[str, int] = {}

    def forget(self) -> None:
        self.known.clear()
        self.heads.clear()
        self._new_heads = {}
        self.complete = False

    def committed(self, positions: Mapping[str, int]) -> None:
        self.known.update(positions)
        self.heads.update(self._new_heads)
        self._new_heads = {}
        if len(self.known) > self.LIMIT:
            self.forget()

    def _links(self, event: ReceivedEvent) -> bool:
        envelope = event.envelope
        prevhash = envelope.prevhash
        if prevhash is None or envelope.chainhash is None:
            return False
        stream = envelope.streamid
        head = self._new_heads.get(stream)
        if head is None:
            head = self.heads.get(stream)
            if head is None:
                # Nothing applied yet: the stream's first event. Applied before this runner: trusted.
                return prevhash == GENESIS_HASH or self._positions_now.get(stream, 0) > 0
        return hash(prevhash) == head

    def _release(  # type: ignore[override]
        self,
        pool: dict[int, ReceivedEvent],
        positions: dict[str, int],
        stream: str,
        hashes: object = None,
        broken: object = None,
    ) -> list[ReceivedEvent]:
        """`StreamSequencer._release` that stops at a chain break (used by `_release_stored` too).

        The runner checks links against its own in-memory heads, so the base class's stored
        `hashes` and its `broken` list (which `_release_stored` passes on) are not used here."""
        del hashes, broken
        released = []
        while positions[stream] + 1 in pool:
            following = pool.pop(positions[stream] + 1)
            if not self._links(following):
                self.broken.append(following)
                break
            positions[stream] += 1
            self._new_heads[following.envelope.streamid] = hash(following.envelope.chainhash)
            released.append(following)
        return released

    async def admit_batch(
        self, conn: AsyncConnection, batch: Sequence[ReceivedEvent]
    ) -> tuple[list[ReceivedEvent], dict[str, int]]:
        """Events to apply now, in order, and the positions to remember once committed; the chain
        breaks left out are in `broken`."""
        if self.complete is None:
            stored = await conn.scalar(
                select(stream_positions.c.version).where(stream_positions.c.consumer == self.consumer).limit(1)
            )
            self.complete = stored is None
        known = self.known
        positions: dict[str, int] = {}
        missing: list[str] = []
        for event in batch:
            stream = event.envelope.streamid
            if stream not in positions:
                found = known.get(stream)
                if found is not None:
                    positions[stream] = found
                elif not self.complete:
                    missing.append(stream)
        if missing:
            positions.update(await self._positions(conn, set(missing)))
        start = dict(positions)
        self._positions_now = start
        self._new_heads = {}
        self.broken = []
        new_heads = self._new_heads
        broken = self.broken
        links = self._links
        ready: list[ReceivedEvent] = []
        waiting: dict[str, dict[int, ReceivedEvent]] = {}
        for event in batch:
            envelope = event.envelope
            stream, version = envelope.streamid, envelope.streamversion
            last = positions.get(stream, 0)
            if version == last + 1:
                if not links(event):
                    broken.append(event)
                    continue
                ready.append(event)
                positions[stream] = version
                new_heads[stream] = hash(envelope.chainhash)
                if stream in waiting:
                    ready.extend(self._release(waiting[stream], positions, stream))
            elif version > last and version not in waiting.get(stream, {}):
                waiting.setdefault(stream, {})[version] = event
            # else: a replay, dropped
        advanced = [s for s, v in positions.items() if v != start.get(s, 0)]
        ready.extend(await self._release_stored(conn, advanced, positions, waiting))
        if waiting:
            await self._hold(conn, [e for held in waiting.values() for e in held.values()], positions)
        changed = {s: v for s, v in positions.items() if v != start.get(s, 0)}
        await POSITIONS.run(conn, [(self.consumer, s, v) for s, v in changed.items()])
        # Streams read back unchanged are worth remembering too.
        return ready, {**{s: v for s, v in start.items() if s not in known}, **changed}


def generation_tables(projection: Projection, generation: int) -> Tables:
    return projection.define(MetaData(), generation)


async def create_tables(engine: AsyncEngine, tables: Tables) -> None:
    """Create a generation's tables; a concurrent creator (reader, runner, another process) may win."""
    for table in tables.values():
        try:
            async with engine.begin() as conn:
                await conn.run_sync(table.create, checkfirst=True)
        except (ProgrammingError, OperationalError, IntegrityError) as error:
            if "already exists" not in str(error).lower() and "duplicate" not in str(error).lower():
                raise


def sequencer_name(projection: Projection, generation: int) -> str:
    return f"projection:{projection.name}:g{generation}"


class GenerationRunner:
    """Feeds one generation of a projection from its own checkpoints."""

    def __init__(
        self,
        engine: AsyncEngine,
        projection: Projection,
        generation: int,
        bootstrap_servers: str,
        *,
        reg: EventRegistry = registry,
        max_records: int = 2000,
        batched: bool | None = None,
    ) -> None:
        self.engine = engine
        self.projection = projection
        self.batched = hasattr(projection, "apply_batch") if batched is None else batched
        self.generation = generation
        self.bootstrap_servers = bootstrap_servers
        self.registry = reg
        self.max_records = max_records
        self.tables = generation_tables(projection, generation)
        self.sequencer = RunnerSequencer(sequencer_name(projection, generation), reg)
        self._written_checkpoints: dict[tuple[str, int], int] | None = None
        self.events_done = 0
        self.skipped = 0
        self.chain_breaks = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: list[TopicPartition] = []
        self._open: _OpenTransaction | None = None
        self._ahead: asyncio.Task[_Batch] | None = None
        self._topics: dict[str, TopicIdentity] = {}
        self._fetched_to: dict[tuple[str, int], int] = {}
        self.replaced: dict[str, str] = {}  # topic → why its checkpoints were dropped at start

    async def create_tables(self) -> None:
        await create_tables(self.engine, self.tables)

    async def start(self) -> None:
        await self.create_tables()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False, **consumer_options()
        )
        await consumer.start()
        self._consumer = consumer
        topics = list(self.projection.topics)
        described = await describe_topics(consumer._client, topics)
        assigned = [TopicPartition(t, p) for t in topics for p in sorted(described[t].partitions)]
        self._topics = described
        self._assigned = assigned
        consumer.assign(assigned)
        checkpoints = await self._reconcile(described)
        for tp in assigned:
            if (tp.topic, tp.partition) in checkpoints:
                consumer.seek(tp, checkpoints[(tp.topic, tp.partition)])
            else:
                await consumer.seek_to_beginning(tp)

    async def _reconcile(self, described: Mapping[str, TopicIdentity]) -> dict[tuple[str, int], int]:
        """This generation's checkpoints that refer to the topics as they are now; the others dropped.

        Offsets mean something only in the log they were taken from. A topic whose id is not the one
        stored with the checkpoints (or, when the broker gives no ids, whose log ends before a
        checkpoint, or which lacks a partition that has one) was recreated: its checkpoints are
        dropped and it is read again from the beginning. That re-applies nothing: the generation's
        stream positions, kept, turn every event it applied already into a replay, and the events
        it never saw (those the old checkpoints would have skipped) are applied in stream order.
        """
        async with self.engine.begin() as conn:
            checkpoints = await self._read_checkpoints(conn)
            rows = await conn.execute(
                select(projection_topics.c.topic, projection_topics.c.topic_id).where(
                    projection_topics.c.projection == self.projection.name,
                    projection_topics.c.generation == self.generation,
                )
            )
            stored: dict[str, str] = {str(t): str(i) for t, i in rows}
            self.replaced = {}
            for topic, identity in described.items():
                reason = await self._replaced_because(topic, identity, stored.get(topic), checkpoints)
                if reason is None:
                    continue
                self.replaced[topic] = reason
                dropped = {p: o for (t, p), o in checkpoints.items() if t == topic}
                await conn.execute(
                    delete(projection_checkpoints).where(
                        projection_checkpoints.c.projection == self.projection.name,
                        projection_checkpoints.c.generation == self.generation,
                        projection_checkpoints.c.topic == topic,
                    )
                )
                for key in [k for k in checkpoints if k[0] == topic]:
                    del checkpoints[key]
                PROJECTION_TOPIC_RESETS.labels(self.projection.name, reason).inc()
                log.warning(
                    "projection.topic_replaced",
                    projection=self.projection.name,
                    generation=self.generation,
                    topic=topic,
                    reason=reason,
                    stored_topic_id=stored.get(topic),
                    topic_id=identity.topic_id,
                    dropped_checkpoints=dropped,
                    action="re-reading the topic from its beginning; events applied already are replays",
                )
            await _TOPIC_IDS.run(
                conn,
                [
                    (self.projection.name, self.generation, topic, identity.topic_id)
                    for topic, identity in described.items()
                    if identity.topic_id is not None and identity.topic_id != stored.get(topic)
                ],
            )
        return checkpoints

    async def _replaced_because(
        self,
        topic: str,
        identity: TopicIdentity,
        stored_id: str | None,
        checkpoints: Mapping[tuple[str, int], int],
    ) -> str | None:
        mine = {p: o for (t, p), o in checkpoints.items() if t == topic}
        if not identity.partitions:
            return None  # not there (yet): nothing to read, nothing to judge
        if identity.topic_id is not None and stored_id is not None:
            return "topic_id_changed" if identity.topic_id != stored_id else None
        if not mine:
            return None
        if not set(mine) <= identity.partitions:
            return "partition_gone"
        # No id to compare (a broker without Metadata v10, or checkpoints older than the ids).
        assert self._consumer is not None
        ends = await self._consumer.end_offsets([TopicPartition(topic, p) for p in mine])
        if any(offset > ends.get(TopicPartition(topic, p), 0) for p, offset in mine.items()):
            return "log_end_below_checkpoint"
        return None

    async def topics_replaced(self) -> str | None:
        """Why the topics this runner reads are no longer the ones it started on, or None.

        A runner assigns its partitions itself and keeps its positions in memory, so a broker
        replaced under it (the same address, topics recreated) would be read on from the old
        positions: the new log's records before them skipped, a partition added by the new
        topic never read. Its fetches show a log that ends before what it read (the high
        watermark), and the broker's metadata another topic id or other partitions. The caller
        restarts the runner, whose `start` then drops the checkpoints of the replaced topics.
        """
        assert self._consumer is not None
        for tp in self._assigned:
            highwater = self._consumer.highwater(tp)
            if highwater is not None and highwater < self._fetched_to.get((tp.topic, tp.partition), 0):
                return "log_end_below_position"
        try:
            described = await describe_topics(self._consumer._client, list(self.projection.topics))
        except Exception as error:  # broker unreachable: nothing can be said now; asked again later
            log.debug("projection.topic_check_failed", projection=self.projection.name, error=type(error).__name__)
            return None
        for topic, now_ in described.items():
            before = self._topics.get(topic, TopicIdentity(None, frozenset()))
            if now_.topic_id and before.topic_id and now_.topic_id != before.topic_id:
                return "topic_id_changed"
            if now_.partitions and now_.partitions != before.partitions:
                return "partitions_changed"
        return None

    async def stop(self) -> None:
        await self._drop_ahead()
        await self.rollback()  # a batch left open by a caller that did not finish its rebuild
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _checkpoints(self) -> dict[tuple[str, int], int]:
        async with self.engine.connect() as conn:
            return await self._read_checkpoints(conn)

    async def _read_checkpoints(self, conn: AsyncConnection) -> dict[tuple[str, int], int]:
        rows = await conn.execute(
            select(
                projection_checkpoints.c.topic,
                projection_checkpoints.c.partition,
                projection_checkpoints.c.next_offset,
            ).where(
                projection_checkpoints.c.projection == self.projection.name,
                projection_checkpoints.c.generation == self.generation,
            )
        )
        return {(t, p): int(o) for t, p, o in rows}

    async def lag(self) -> int:
        """Records between this generation's position and the end of its topics now."""
        assert self._consumer is not None
        behind = await end_distance(self._consumer, self._assigned)
        if self._ahead is not None:
            # Read ahead, so past the consumer's position, but not applied yet.
            behind += (await asyncio.shield(self._ahead)).fetched
        PROJECTION_LAG.labels(self.projection.name).set(behind)
        return behind

    async def _fetch(self, timeout_ms: int) -> list[IncomingRecord]:
        assert self._consumer is not None
        fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self.max_records)
        records = [IncomingRecord.from_consumer_record(r) for batch in fetched.values() for r in batch]
        while records and len(records) < self.max_records:
            more = await self._consumer.getmany(timeout_ms=FILL_MS, max_records=self.max_records - len(records))
            got = [IncomingRecord.from_consumer_record(r) for batch in more.values() for r in batch]
            if not got:
                break
            records += got
        return records

    async def step(self, timeout_ms: int = 200) -> int:
        """Fetch and apply one batch; returns the number of records consumed."""
        with _without_cyclic_gc():
            batch = await self._next_batch(timeout_ms)
            if batch.fetched:
                await self._apply_batch(batch)
            return batch.fetched

    async def step_rebuilding(self, timeout_ms: int = 200) -> int:
        """`step` for a rebuild: the batch joins the transaction left open by the previous ones,
        which commits once due (`REBUILD_COMMIT_EVENTS`, `REBUILD_COMMIT_SECONDS`) or when nothing
        more was fetched. Whoever calls it must end with `commit` (or `rollback`).

        The next batch is fetched and decoded while this one is written: on PostgreSQL the
        runner otherwise sat idle for every statement the server ran (a third of a rebuild's time,
        docs/benchmarks/reporting.md). Records read ahead are counted by `lag`, and dropped by
        `stop`, so a runner that fails resumes from its checkpoints as before."""
        with _without_cyclic_gc():
            batch = await self._next_batch(timeout_ms)
            if not batch.fetched:
                await self.commit()
                return 0
            self._ahead = asyncio.create_task(self._fetch_batch(timeout_ms))
            await self._apply_batch(batch, keep_open=True)
        open_ = self._open
        if open_ is not None and (
            open_.events >= REBUILD_COMMIT_EVENTS or time.monotonic() - open_.began >= REBUILD_COMMIT_SECONDS
        ):
            await self.commit()
            if not gc.isenabled():
                # The rebuild holds the automatic collector off (`_without_cyclic_gc`); the young
                # generations are swept here, about once a second, so cycles other work in the
                # process makes meanwhile (HTTP requests) do not pile up for a long rebuild. What
                # they hold then is mostly the batch read ahead: a few milliseconds.
                gc.collect(1)
        return batch.fetched

    async def _next_batch(self, timeout_ms: int) -> _Batch:
        ahead, self._ahead = self._ahead, None
        return await ahead if ahead is not None else await self._fetch_batch(timeout_ms)

    async def _fetch_batch(self, timeout_ms: int) -> _Batch:
        """Fetch and decode a batch read ahead: decoded a slice at a time, so that the batch being
        written gets the loop back as soon as the database answers (one block of decoding the size
        of a batch overlapped one statement of the batch before, not all of them)."""
        records = await self._fetch(timeout_ms)
        batch = _Batch(len(records), [], {})
        for start in range(0, len(records), DECODE_SLICE):
            if start:
                await asyncio.sleep(0)
            with _without_cyclic_gc():
                self._decode_into(batch, records[start : start + DECODE_SLICE])
        return batch

    async def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            await asyncio.wait([ahead])  # raises only if this task itself is cancelled meanwhile
            if not ahead.cancelled():
                ahead.exception()  # retrieved: a fetch that failed after its batch was given up says nothing

    async def apply_records(self, records: Sequence[IncomingRecord], *, keep_open: bool = False) -> None:
        """Decode, sequence and apply one batch with its checkpoints in one transaction; with
        `keep_open` that transaction stays open for the next batches until `commit`."""
        with _without_cyclic_gc():
            await self._apply_batch(self._decode(records), keep_open=keep_open)

    async def _apply_batch(self, batch: _Batch, *, keep_open: bool = False) -> None:
        """Callers hold the collector off (`_without_cyclic_gc`) from decoding to here."""
        self._fetched_to.update(batch.next_offsets)
        await self._apply(batch.events, batch.next_offsets, rebuilding=keep_open)
        if not keep_open:
            await self.commit()

    def _decode(self, records: Sequence[IncomingRecord]) -> _Batch:
        batch = _Batch(len(records), [], {})
        self._decode_into(batch, records)
        return batch

    def _decode_into(self, batch: _Batch, records: Sequence[IncomingRecord]) -> None:
        """Add the records' events to the batch (rejected records left out, visibly) and advance the
        next offset of each partition."""
        append = batch.events.append
        reg = self.registry
        next_offsets = batch.next_offsets
        for record in records:
            key = (record.topic, record.partition)
            if record.offset >= next_offsets.get(key, 0):
                next_offsets[key] = record.offset + 1
            item = decode_record(record, reg)
            if isinstance(item, Rejected):
                # Consumers dead-letter these; a projection just leaves them out, visibly.
                self.skipped += 1
                log.warning(
                    "projection.record_skipped",
                    projection=self.projection.name,
                    reason=item.reason,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )
            else:
                append(item)

    async def _apply(
        self,
        decoded: Sequence[ReceivedEvent],
        next_offsets: Mapping[tuple[str, int], int],
        *,
        rebuilding: bool = False,
    ) -> None:
        if self._open is None:
            conn = await self.engine.connect()
            deferring = rebuilding and conn.dialect.name == "sqlite"
            try:
                if deferring:
                    await _checkpoint_threshold(conn, REBUILD_WAL_PAGES)
                await conn.begin()
            except BaseException:
                await _release(conn, deferring)
                raise
            self._open = _OpenTransaction(conn, time.monotonic(), deferring)
        open_ = self._open
        conn = open_.conn
        try:
            stored = await self._read_checkpoints(conn)
            if self._written_checkpoints is not None and stored != self._written_checkpoints:
                # Someone else advanced this generation: what this runner remembers may be stale.
                log.warning("projection.other_writer", projection=self.projection.name, generation=self.generation)
                self.sequencer.forget()
            ready, positions = await self.sequencer.admit_batch(conn, decoded)
            if self.sequencer.broken:
                self._chain_breaks(self.sequencer.broken)
            if self.batched:
                await cast(BatchProjection, self.projection).apply_batch(conn, self.tables, ready)
            else:
                for event in ready:
                    await self.projection.apply(conn, self.tables, event)
            await _CHECKPOINTS.run(
                conn,
                [(self.projection.name, self.generation, t, p, o) for (t, p), o in next_offsets.items()],
            )
        except BaseException:
            await self.rollback()
            raise
        # Remembered now, so that the next batch of an open transaction sees what this one did;
        # forgotten by `rollback` (a failed batch or commit) like everything since the last commit.
        self.sequencer.committed(positions)
        self._written_checkpoints = {**stored, **next_offsets}
        open_.events += len(ready)

    def _chain_breaks(self, broken: Sequence[ReceivedEvent]) -> None:
        """Consumers dead-letter these (`chain_break`); a projection leaves them out, visibly."""
        self.chain_breaks += len(broken)
        PROJECTION_CHAIN_BREAKS.labels(self.projection.name).inc(len(broken))
        for event in broken:
            envelope, record = event.envelope, event.record
            log.error(
                "projection.chain_break",
                projection=self.projection.name,
                stream=envelope.streamid,
                version=envelope.streamversion,
                event_id=envelope.id,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )

    async def commit(self) -> None:
        """Commit the open transaction, if any: its batches' effects, positions and checkpoints."""
        open_, self._open = self._open, None
        if open_ is None:
            return
        try:
            await open_.conn.commit()
        except BaseException:
            self._forget()
            raise
        finally:
            await _release(open_.conn, open_.deferring_checkpoints)
        self.events_done += open_.events
        PROJECTION_EVENTS.labels(self.projection.name).inc(open_.events)

    async def rollback(self) -> None:
        """Drop the open transaction, if any, and whatever the runner remembers of it."""
        open_, self._open = self._open, None
        if open_ is not None:
            self._forget()
            await _release(open_.conn, open_.deferring_checkpoints)  # rolls back

    def _forget(self) -> None:
        self.sequencer.forget()
        self._written_checkpoints = None


class _Batch(NamedTuple):
    """Records fetched in one go: how many, their events, and the next offset of each partition."""

    fetched: int
    events: list[ReceivedEvent]
    next_offsets: dict[tuple[str, int], int]


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Hold the cyclic garbage collector off while batches are decoded and applied.

    A batch's decoded events (several tracked objects each) all live until the batch is done and
    then die by reference counting: the cyclic collector would only scan them (a young-generation
    pass per few thousand events, ~10 % of a rebuild's CPU). A rebuild holds it off for its whole
    run, since the batch read ahead is alive whenever the one before ends, and sweeps the young
    generations itself at each commit (`step_rebuilding`). Whoever found it on
    switches it back on, so overlapping holders (other runners in the process) leave it as it was
    once all are done.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@dataclass
class _OpenTransaction:
    conn: AsyncConnection
    began: float
    deferring_checkpoints: bool = False
    events: int = 0


async def _release(conn: AsyncConnection, deferring_checkpoints: bool) -> None:
    """Close a runner's connection (rolling back what is uncommitted), first giving back SQLite's
    usual checkpoint threshold if the rebuild raised it: the pool hands the connection to others."""
    with contextlib.suppress(Exception):
        if deferring_checkpoints:
            await _checkpoint_threshold(conn, WAL_AUTOCHECKPOINT_PAGES)
    with contextlib.suppress(Exception):
        await conn.close()


async def _checkpoint_threshold(conn: AsyncConnection, pages: int) -> None:
    """Set SQLite's `wal_autocheckpoint` on the driver's connection itself: through SQLAlchemy the
    statement would begin a transaction (and take the write lock) just to change a setting."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")


class ProjectionManager:
    """Knows the live generation of one projection, follows it, and rebuilds the next one."""

    def __init__(
        self,
        engine: AsyncEngine,
        projection: Projection,
        bootstrap_servers: str,
        *,
        reg: EventRegistry = registry,
        max_records: int = 2000,
        batched: bool | None = None,
        reader: AsyncEngine | None = None,
    ) -> None:
        self.max_records = max_records
        self.batched = batched
        self.engine = engine
        self.reader = reader or engine
        self.projection = projection
        self.bootstrap_servers = bootstrap_servers
        self.registry = reg
        self._active: int | None = None
        self._created: set[int] = set()

    async def active_generation(self) -> int:
        """Read through the reader engine when there is one: a rebuild holds the writer (on SQLite the
        process's only writer connection) for up to `REBUILD_COMMIT_SECONDS`, and readers asking which
        tables are live must not wait for it. Only the very first call writes (the initial row)."""
        async with self.reader.connect() as conn:
            value = await conn.scalar(_ACTIVE, {"projection": self.projection.name})
        if value is not None:
            self._active = int(value)
            return self._active
        async with self.engine.begin() as conn:
            value = await conn.scalar(_ACTIVE, {"projection": self.projection.name})
            if value is None:
                await insert_ignoring_duplicates(
                    conn, projection_state, [{"projection": self.projection.name, "active_generation": 1}]
                )
                value = 1
        self._active = int(value)
        return self._active

    async def tables(self) -> Tables:
        """The live generation's tables, for readers (created empty if nothing was applied yet)."""
        generation = await self.active_generation()
        tables = generation_tables(self.projection, generation)
        if generation not in self._created:
            await create_tables(self.engine, tables)
            self._created.add(generation)
        return tables

    def runner(self, generation: int) -> GenerationRunner:
        return GenerationRunner(
            self.engine,
            self.projection,
            generation,
            self.bootstrap_servers,
            reg=self.registry,
            max_records=self.max_records,
            batched=self.batched,
        )

    async def follow(self, stop: asyncio.Event, poll: float = 0.2) -> None:
        """Keep the live generation up to date; move to a new generation when a rebuild switched.

        Survives broker and database outages: it logs, waits and resumes from its checkpoints.
        """
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._follow_generation(stop, poll)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning(
                    "projection.follow_failed",
                    projection=self.projection.name,
                    error_type=type(error).__name__,
                    retry_in=backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _follow_generation(self, stop: asyncio.Event, poll: float) -> None:
        generation = await self.active_generation()
        runner = self.runner(generation)
        await runner.start()
        try:
            last_check = last_topic_check = time.monotonic()
            while not stop.is_set():
                consumed = await runner.step()
                if time.monotonic() - last_check > 1.0 or not consumed:
                    if await self.active_generation() != generation:
                        log.info("projection.following_new_generation", projection=self.projection.name)
                        return
                    last_check = time.monotonic()
                if time.monotonic() - last_topic_check > TOPIC_CHECK_SECONDS:
                    reason = await runner.topics_replaced()
                    if reason is not None:
                        log.warning(
                            "projection.topics_changed_under_runner",
                            projection=self.projection.name,
                            generation=generation,
                            reason=reason,
                            action="restarting from the checkpoints, which are checked against the topics",
                        )
                        return
                    last_topic_check = time.monotonic()
                if not consumed:
                    await asyncio.sleep(poll)
        finally:
            await runner.stop()

    async def rebuild(self, progress: Callable[[Progress], None] | None = None, report_every: float = 1.0) -> Progress:
        """Build the next generation from the start of the topics; switch when caught up."""
        current = await self.active_generation()
        async with self.engine.begin() as conn:
            building = await conn.scalar(
                select(projection_state.c.building_generation).where(
                    projection_state.c.projection == self.projection.name
                )
            )
            generation = max(current, int(building or 0)) + 1
            await conn.execute(
                update(projection_state)
                .where(projection_state.c.projection == self.projection.name)
                .values(building_generation=generation)
            )
        runner = self.runner(generation)
        await runner.start()
        started = time.monotonic()
        last_report = started
        try:
            with _without_cyclic_gc():  # see its docstring: a batch read ahead is always alive
                while True:
                    consumed = await runner.step_rebuilding()
                    now_ = time.monotonic()
                    if consumed and now_ - last_report < report_every:
                        continue
                    remaining = await runner.lag()
                    if remaining == 0:
                        await runner.commit()
                    status = Progress(
                        self.projection.name,
                        generation,
                        runner.events_done,
                        remaining,
                        runner.events_done / max(now_ - started, 1e-9),
                    )
                    if progress:
                        progress(status)
                    last_report = now_
                    if remaining == 0:
                        break
        finally:
            await runner.stop()  # after a failure, rolls back the batches not committed yet
        await self._switch(generation)
        final = Progress(
            self.projection.name,
            generation,
            runner.events_done,
            0,
            runner.events_done / max(time.monotonic() - started, 1e-9),
        )
        log.info(
            "projection.rebuilt",
            projection=self.projection.name,
            generation=generation,
            events=runner.events_done,
            rate=round(final.rate),
        )
        return final

    async def _switch(self, generation: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(projection_state)
                .where(projection_state.c.projection == self.projection.name)
                .values(active_generation=generation, building_generation=None, switched_at=now())
            )
        # Keep the previous generation for readers that are mid-query; drop older ones.
        for old in range(1, generation - 1):
            await self.drop_generation(old)

    async def drop_generation(self, generation: int) -> None:
        tables = generation_tables(self.projection, generation)
        name = sequencer_name(self.projection, generation)
        async with self.engine.begin() as conn:
            for table in tables.values():
                await conn.run_sync(table.drop, checkfirst=True)
            await conn.execute(delete(stream_positions).where(stream_positions.c.consumer == name))
            await conn.execute(delete(held_events).where(held_events.c.consumer == name))
            await conn.execute(
                delete(projection_checkpoints).where(
                    projection_checkpoints.c.projection == self.projection.name,
                    projection_checkpoints.c.generation == generation,
                )
            )
