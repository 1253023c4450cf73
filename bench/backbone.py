"""Backbone throughput: store appends, relay publishing and consumers with inbox, each beside its baseline.

Everything is measured in one run on this machine, repeated, and reported as
medians with the range and this process's CPU time per event (other work shares
the CPU). Each figure has a baseline
measured in the same run, interleaved with it, so ratios survive a noisy machine:

- appends: `EventStore.append` vs. plain SQLAlchemy inserts of rows of the same
  size into the same tables of a fresh database of the same kind (the database
  floor: no envelope, hash or head check);
- relay: `OutboxRelay.publish_pending` with `AiokafkaPublisher` vs. the same
  producer sending the same, already encoded messages;
- consumer: `EventConsumer.handle_batch` (no-op handler, inbox + stream versions)
  fed by an aiokafka consumer as `subscribe()` would, and faststream `subscribe()`
  end to end, vs. raw aiokafka consumption of the same topic.

    python -m bench.run --only backbone
    BENCH_EVENTS=5000 BENCH_REPEATS=2 python -m bench.run --only backbone   # quick
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events.contracts.example import TallyRecorded
from tsunagu_events.envelope import now
from tsunagu_platform.cli import tune_gc
from tsunagu_platform.consumer import DeadLetters, EventConsumer, IncomingRecord, ReceivedEvent, decode_record
from tsunagu_platform.db import create_engine
from tsunagu_platform.kafka import (
    AiokafkaPublisher,
    consumer_options,
    ensure_topics,
    faststream_broker,
    producer_options,
)
from tsunagu_platform.relay import OutboxRelay
from tsunagu_platform.settings import ServiceSettings
from tsunagu_platform.store import EventContext, EventStore, NewEvent
from tsunagu_platform.subscription import subscribe
from tsunagu_platform.tables import events, inbox, outbox
from tsunagu_platform.tables import metadata as platform_metadata
from tsunagu_platform.tansu import TansuBroker

EVENTS = int(os.environ.get("BENCH_EVENTS", "20000"))
"""Events per batched-append round; each round's outbox (plus its single appends) is then relayed, and
round one's topic consumed."""
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
SINGLE_APPENDS = int(os.environ.get("BENCH_SINGLE_APPENDS", "200"))
SUBSCRIBE_REPEATS = int(os.environ.get("BENCH_SUBSCRIBE_REPEATS", "1"))
"""faststream end to end costs a consumer-group join (seconds on Tansu) per run: a cross-check, not repeated."""
RAW_PER_ROUND = 3  # raw consumption takes a fraction of a second: sample it more often
PER_APPEND = 100
CONSUME_BATCH = ServiceSettings.model_fields["consumer_batch"].default  # what services pass to subscribe()
TENANT = "131121"
SOURCE = "/tsunagu/131121/bench"

Figures = dict[str, list[float]]
CPU_SUFFIX = "@cpu_us"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> float:
    """(max - min) / median, in percent: how much the repeats disagree."""
    if len(values) < 2:
        return 0.0
    return 100.0 * (max(values) - min(values)) / median(values)


def record(figures: Figures, name: str, count: int, seconds: float, cpu: float | None = None) -> float:
    """Keep a rate and, when given, this process's CPU time per event (less sensitive to neighbours)."""
    rate = count / seconds if seconds > 0 else float("nan")
    figures.setdefault(name, []).append(rate)
    note = ""
    if cpu is not None and count:
        figures.setdefault(name + CPU_SUFFIX, []).append(1e6 * cpu / count)
        note = f", {1e6 * cpu / count:.0f} µs CPU/event"
    print(f"   {name:<46} {rate:>10,.0f} /s  ({count} in {seconds:.2f} s{note})", flush=True)
    return rate


async def measure(figures: Figures, name: str, work: Awaitable[tuple[int, float]]) -> float:
    """Await a measurement and record it with the CPU time this process spent on it (all threads:
    aiosqlite's included, the PostgreSQL server's and the broker's not)."""
    cpu = time.process_time()
    count, seconds = await work
    return record(figures, name, count, seconds, time.process_time() - cpu)


async def migrate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(platform_metadata.create_all)


async def noop_handler(_conn: AsyncConnection, _event: ReceivedEvent) -> None:
    return None


def tally(stream: str) -> NewEvent:
    return NewEvent(TallyRecorded(window=stream[:64], count=1, category="general"))


class Databases:
    """One database of each kind per measurement, so earlier rounds never slow later ones."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.postgres_urls: list[str] = []
        self.engines: list[AsyncEngine] = []
        self.postgres_problem: str | None = None

    async def new(self, kind: str) -> AsyncEngine | None:
        if kind == "sqlite":
            url = f"sqlite:///{self.folder / f'{uuid.uuid4().hex[:8]}.db'}"
        else:
            if self.postgres_problem:
                return None
            from tsunagu_platform.testing import create_postgres_database

            try:
                url = await create_postgres_database()
            except BaseException as error:  # testing.py skips through pytest.skip (a BaseException)
                if isinstance(error, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
                    raise
                self.postgres_problem = f"{type(error).__name__}: {error}"
                print(f"   PostgreSQL unavailable, its figures are left out: {self.postgres_problem}")
                return None
            self.postgres_urls.append(url)
        engine = create_engine(url)
        self.engines.append(engine)
        await migrate(engine)
        return engine

    async def close(self) -> None:
        for engine in self.engines:
            await engine.dispose()
        if self.postgres_urls:
            from tsunagu_platform.testing import drop_postgres_database

            for url in self.postgres_urls:
                await drop_postgres_database(url)


# --- appends ---------------------------------------------------------------------------------------


async def append_batched(store: EventStore, total: int, prefix: str) -> tuple[int, float]:
    context = EventContext(tenant=TENANT, source=SOURCE)
    appends = total // PER_APPEND
    started = time.perf_counter()
    for index in range(appends):
        stream = f"{prefix}-{index}"
        await store.append(stream, 0, [tally(stream) for _ in range(PER_APPEND)], context)
    return appends * PER_APPEND, time.perf_counter() - started


async def append_single(store: EventStore, count: int, prefix: str, streams: int = 50) -> tuple[int, float]:
    """One event per append (one command, one transaction), cycling over existing streams."""
    context = EventContext(tenant=TENANT, source=SOURCE)
    versions = [0] * streams
    started = time.perf_counter()
    for index in range(count):
        slot = index % streams
        stream = f"{prefix}-{slot}"
        await store.append(stream, versions[slot], [tally(stream)], context)
        versions[slot] += 1
    return count, time.perf_counter() - started


async def sample_envelope_text(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        text = await conn.scalar(select(events.c.envelope).limit(1))
    assert isinstance(text, str)
    return text


async def raw_inserts(engine: AsyncEngine, total: int, per_txn: int, envelope: str, topic: str) -> tuple[int, float]:
    """The floor: rows of the same size into the same tables, same transaction sizes, nothing else."""
    moment = datetime.now(UTC)
    transactions = total // per_txn
    prefix = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    for t in range(transactions):
        rows = []
        ids = []
        for v in range(1, per_txn + 1):
            event_id = str(uuid.uuid4())
            ids.append(event_id)
            rows.append(
                {
                    "event_id": event_id,
                    "stream_id": f"raw-{prefix}-{t}",
                    "stream_version": v,
                    "event_type": "tsunagu.example.TallyRecorded",
                    "data_version": 2,
                    "tenant": TENANT,
                    "occurred_at": moment,
                    "recorded_at": moment,
                    "prev_hash": "0" * 64,
                    "chain_hash": "0" * 64,
                    "envelope": envelope,
                }
            )
        async with engine.begin() as conn:
            await conn.execute(insert(events), rows)
            await conn.execute(
                insert(outbox),
                [{"event_id": i, "topic": topic, "created_at": moment, "attempts": 0} for i in ids],
            )
    return transactions * per_txn, time.perf_counter() - started


async def bench_appends(databases: Databases, figures: Figures, prefix: str) -> list[tuple[str, EventStore]]:
    """Appends per round and kind; returns the stores, whose outboxes the relay rounds then publish.

    The baseline writes into a database of its own, so the relay later finds only real events."""
    stores = []
    for rep in range(REPEATS):
        print(f"-- appends, round {rep + 1}/{REPEATS}", flush=True)
        for kind in ("sqlite", "postgresql"):
            engine = await databases.new(kind)
            floor = await databases.new(kind)
            if engine is None or floor is None:
                continue
            store = EventStore(engine, topic=f"{prefix}.{kind}.r{rep}")
            stores.append((kind, store))
            await measure(figures, f"append.{kind}.batched", append_batched(store, EVENTS, "b"))
            envelope = await sample_envelope_text(engine)
            await measure(
                figures,
                f"baseline.insert.{kind}.batched",
                raw_inserts(floor, EVENTS, PER_APPEND, envelope, store.topic),
            )
            await measure(figures, f"append.{kind}.single", append_single(store, SINGLE_APPENDS, "s"))
            await measure(
                figures,
                f"baseline.insert.{kind}.single",
                raw_inserts(floor, SINGLE_APPENDS, 1, envelope, store.topic),
            )
    return stores


# --- relay -----------------------------------------------------------------------------------------


async def relay_all(engine: AsyncEngine, bootstrap: str) -> tuple[int, float]:
    publisher = AiokafkaPublisher(bootstrap, client_id="bench-relay")
    await publisher.start()
    relay = OutboxRelay(engine, publisher, service="bench")
    try:
        total = 0
        started = time.perf_counter()
        while published := await relay.publish_pending():
            total += published
        return total, time.perf_counter() - started
    finally:
        await publisher.stop()


Encoded = tuple[bytes, list[tuple[str, bytes]], bytes]


async def produce_raw(bootstrap: str, topic: str, messages: Sequence[Encoded]) -> tuple[int, float]:
    """The same producer and batch size as the relay, the same bytes, no database."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="bench-raw", **producer_options(False))
    await producer.start()
    try:
        started = time.perf_counter()
        for first in range(0, len(messages), 500):
            pending = [
                await producer.send(topic, value=value, key=key, headers=headers)
                for key, headers, value in messages[first : first + 500]
            ]
            await asyncio.gather(*pending)
        return len(messages), time.perf_counter() - started
    finally:
        await producer.stop()


async def encoded_outbox(engine: AsyncEngine) -> list[Encoded]:
    from tsunagu_events import to_kafka
    from tsunagu_platform.store import deserialise

    async with engine.connect() as conn:
        rows = (await conn.execute(select(events.c.envelope).order_by(events.c.position))).scalars().all()
    return [to_kafka(deserialise(text)) for text in rows]


async def bench_relay(stores: Sequence[tuple[str, EventStore]], bootstrap: str, figures: Figures) -> tuple[str, int]:
    """Relays each append round's outbox; returns the first topic and its size (what the consumers read)."""
    first: tuple[str, int] = ("", 0)
    for index, (kind, store) in enumerate(stores):
        if index % 2 == 0:
            print(f"-- relay, round {index // 2 + 1}/{REPEATS}", flush=True)
        await ensure_topics(bootstrap, [store.topic, store.topic + ".raw"])
        await measure(figures, f"relay.{kind}", relay_all(store.engine, bootstrap))
        messages = await encoded_outbox(store.engine)
        await measure(figures, f"baseline.produce.{kind}", produce_raw(bootstrap, store.topic + ".raw", messages))
        if not first[0]:
            first = (store.topic, len(messages))
    return first


# --- consumers -------------------------------------------------------------------------------------


async def fetch_all(
    bootstrap: str,
    topic: str,
    expected: int,
    on_batch: Callable[[list[Any]], Awaitable[None]] | None = None,
    *,
    group_id: str | None = None,
) -> tuple[int, float]:
    """Read `topic` from the beginning in batches of CONSUME_BATCH until `expected` records arrived.

    The clock starts at the first non-empty fetch, so connecting and the first metadata
    round trip are not counted (the same for every variant)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False, **consumer_options()
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        started: float | None = None
        deadline = time.monotonic() + 300
        while seen < expected and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=CONSUME_BATCH)
            batch = [r for records in fetched.values() for r in records]
            if not batch:
                continue
            if started is None:
                started = time.perf_counter()
            if on_batch is not None:
                await on_batch(batch)
                if group_id is not None:
                    await consumer.commit()
            seen += len(batch)
        return seen, time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()


def event_consumer(engine: AsyncEngine, bootstrap_publisher: AiokafkaPublisher, name: str) -> EventConsumer:
    return EventConsumer(name, engine, noop_handler, DeadLetters(bootstrap_publisher, name))


async def inbox_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(inbox)) or 0)


async def consume_with_inbox(
    engine: AsyncEngine, bootstrap: str, topic: str, expected: int, publisher: AiokafkaPublisher
) -> tuple[int, float]:
    consumer = event_consumer(engine, publisher, "bench.inbox")

    async def on_batch(batch: list[Any]) -> None:
        await consumer.handle_batch([IncomingRecord.from_consumer_record(r) for r in batch])

    count, seconds = await fetch_all(bootstrap, topic, expected, on_batch, group_id=f"bench-{uuid.uuid4().hex[:8]}")
    stored = await inbox_rows(engine)
    if stored != expected:
        raise AssertionError(f"inbox holds {stored} rows after consuming {expected} events")
    return count, seconds


async def consume_decode_only(bootstrap: str, topic: str, expected: int) -> tuple[int, float]:
    """Raw consume plus decode_record: how much of the consumer's time is decoding alone."""

    async def on_batch(batch: list[Any]) -> None:
        for r in batch:
            decode_record(IncomingRecord.from_consumer_record(r))

    return await fetch_all(bootstrap, topic, expected, on_batch)


async def consume_subscribe(
    engine: AsyncEngine, bootstrap: str, topic: str, expected: int, publisher: AiokafkaPublisher
) -> tuple[int, float]:
    """faststream `subscribe()` end to end; timed from the first batch's arrival to the last one's commit."""
    consumer = event_consumer(engine, publisher, "bench.subscribe")
    inner = consumer.handle_batch
    first: list[float] = []
    last: list[float] = []
    seen = [0]
    done = asyncio.Event()

    async def timed(records: Sequence[IncomingRecord]) -> None:
        if not first:
            first.append(time.perf_counter())
        await inner(records)
        seen[0] += len(records)
        last[:] = [time.perf_counter()]
        if seen[0] >= expected:
            done.set()

    consumer.handle_batch = timed  # type: ignore[method-assign]
    broker = faststream_broker(bootstrap)
    subscribe(broker, consumer, [topic], group_id=f"bench-fs-{uuid.uuid4().hex[:8]}", max_records=CONSUME_BATCH)
    await broker.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=300)
    finally:
        await broker.stop()
    stored = await inbox_rows(engine)
    if stored != expected:
        raise AssertionError(f"inbox holds {stored} rows after subscribe() saw {seen[0]} of {expected}")
    return seen[0], last[0] - first[0]


async def bench_consumers(databases: Databases, bootstrap: str, topic: str, expected: int, figures: Figures) -> None:
    publisher = AiokafkaPublisher(bootstrap, client_id="bench-dlq")
    await publisher.start()
    try:
        for rep in range(REPEATS):
            print(f"-- consumers, round {rep + 1}/{REPEATS}", flush=True)
            for _ in range(RAW_PER_ROUND):
                await measure(figures, "baseline.consume.raw", fetch_all(bootstrap, topic, expected))
            await measure(figures, "consume.decode_only", consume_decode_only(bootstrap, topic, expected))
            for kind in ("sqlite", "postgresql"):
                engine = await databases.new(kind)
                if engine is None:
                    continue
                await measure(
                    figures,
                    f"consume.inbox.{kind}",
                    consume_with_inbox(engine, bootstrap, topic, expected, publisher),
                )
                if rep >= SUBSCRIBE_REPEATS:
                    continue
                engine = await databases.new(kind)
                if engine is not None:
                    await measure(
                        figures,
                        f"consume.subscribe.{kind}",
                        consume_subscribe(engine, bootstrap, topic, expected, publisher),
                    )
    finally:
        await publisher.stop()


# --- report ----------------------------------------------------------------------------------------

ROWS = [
    ("append.sqlite.batched", "baseline.insert.sqlite.batched", "EventStore.append, SQLite, 100 events/append"),
    ("append.sqlite.single", "baseline.insert.sqlite.single", "EventStore.append, SQLite, 1 event/append"),
    ("append.postgresql.batched", "baseline.insert.postgresql.batched", "EventStore.append, PostgreSQL, 100/append"),
    ("append.postgresql.single", "baseline.insert.postgresql.single", "EventStore.append, PostgreSQL, 1/append"),
    ("relay.sqlite", "baseline.produce.sqlite", "OutboxRelay.publish_pending, SQLite"),
    ("relay.postgresql", "baseline.produce.postgresql", "OutboxRelay.publish_pending, PostgreSQL"),
    ("consume.decode_only", "baseline.consume.raw", "raw consume + decode_record (no DB)"),
    ("consume.inbox.sqlite", "baseline.consume.raw", "EventConsumer.handle_batch + inbox, SQLite"),
    ("consume.inbox.postgresql", "baseline.consume.raw", "EventConsumer.handle_batch + inbox, PostgreSQL"),
    ("consume.subscribe.sqlite", "baseline.consume.raw", "faststream subscribe() end to end, SQLite"),
    ("consume.subscribe.postgresql", "baseline.consume.raw", "faststream subscribe() end to end, PostgreSQL"),
]

TARGETS = {
    "append.sqlite.batched": ("≥ 5,000 events/s", lambda rate, _ratio: rate >= 5000),
    "consume.inbox.sqlite": ("≥ 20,000 events/s and ≥ 10% of raw", lambda rate, ratio: rate >= 20000 and ratio >= 0.1),
    "consume.inbox.postgresql": (
        "≥ 20,000 events/s and ≥ 10% of raw",
        lambda rate, ratio: rate >= 20000 and ratio >= 0.1,
    ),
}


def summarise(figures: Figures) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in figures.items():
        out[name] = {
            "median": round(median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
            "spread_pct": round(spread(values), 1),
            "runs": [round(v, 1) for v in values],
        }
    return out


def report(figures: Figures) -> list[dict[str, Any]]:
    """Print the figures as the Markdown table docs/benchmarks.md carries, and return them."""
    lines = []
    print(
        "\n| figure | events/s (median) | runs min–max | CPU µs/event | baseline | baseline events/s "
        "| ratio | target |\n|---|---:|---:|---:|---|---:|---:|---|"
    )
    for name, base, label in ROWS:
        if name not in figures:
            continue
        values = figures[name]
        rate = median(values)
        base_rate = median(figures.get(base, []))
        ratio = rate / base_rate if base_rate else float("nan")
        cpu = median(figures.get(name + CPU_SUFFIX, []))
        target, check = TARGETS.get(name, ("", None))
        verdict = ("**met**" if check(rate, ratio) else "**missed**") if check else ""
        print(
            f"| {label} | {rate:,.0f} | {min(values):,.0f}–{max(values):,.0f} | {cpu:,.0f} | {base} "
            f"| {base_rate:,.0f} | {ratio:.2f} | {target} {verdict} |"
        )
        lines.append(
            {
                "figure": name,
                "label": label,
                "median_per_s": round(rate),
                "min_per_s": round(min(values)),
                "max_per_s": round(max(values)),
                "cpu_us_per_event": round(cpu, 1),
                "baseline": base,
                "baseline_median_per_s": round(base_rate),
                "ratio": round(ratio, 3),
                "target": target,
                "verdict": verdict.strip("*"),
            }
        )
    return lines


async def run() -> dict[str, Any]:
    figures: Figures = {}
    load_before = os.getloadavg()
    started = now()
    prefix = f"bench.{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="tsunagu-bench-") as folder, TansuBroker() as broker:
        databases = Databases(Path(folder))
        try:
            section = time.perf_counter()
            stores = await bench_appends(databases, figures, prefix)
            print(f"   (appends took {time.perf_counter() - section:.0f} s)")
            section = time.perf_counter()
            topic, size = await bench_relay(stores, broker.bootstrap_servers, figures)
            print(f"   (relay took {time.perf_counter() - section:.0f} s)")
            section = time.perf_counter()
            await bench_consumers(databases, broker.bootstrap_servers, topic, size, figures)
            print(f"   (consumers took {time.perf_counter() - section:.0f} s)")
        finally:
            await databases.close()
    rows = report(figures)
    machine = {
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "started": started.isoformat(timespec="seconds"),
        "events_per_round": EVENTS,
        "repeats": REPEATS,
        "postgresql": databases.postgres_problem or "ok",
    }
    print(f"\nmachine: {machine}")
    return {"table": rows, "figures": summarise(figures), "machine": machine}


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Warnings only while measuring (per-batch debug lines would cost time and drown the figures);
    restored afterwards, so the benchmarks `bench.run` runs next see logging as they left it."""
    structlog_config = structlog.get_config()
    disabled = logging.root.manager.disable
    logging.disable(logging.INFO)  # faststream's loggers carry their own levels
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(**structlog_config)
        logging.disable(disabled)


def main() -> dict[str, Any]:
    tune_gc()  # as in a service process (tsunagu_platform.cli)
    with quiet_logs():
        return asyncio.run(run())


if __name__ == "__main__":
    main()
