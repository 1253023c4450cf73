"""A tiny example on the backbone, exercised by its tests and benchmarks (not ward logic).

Windows record tallies (`TallyRecorded`); a consumer sums them per window into
`tally_totals`, and the `TallyTotals` projection keeps the same sums as a
rebuildable read model. The command line runs each part as its own process so the
integration tests can kill and restart them:

    python -m tsunagu_platform.example append --database-url URL --streams 5 --events 10
    python -m tsunagu_platform.example relay --database-url URL --bootstrap HOST:PORT
    python -m tsunagu_platform.example consume --database-url URL --bootstrap HOST:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events.contracts.example import TallyRecorded
from tsunagu_events.topics import EXAMPLE_TOPIC, dlq_topic

from tsunagu_platform.consumer import DeadLetters, EventConsumer, ReceivedEvent
from tsunagu_platform.db import create_engine
from tsunagu_platform.kafka import AiokafkaPublisher, ensure_topics, faststream_broker
from tsunagu_platform.logging import configure_logging
from tsunagu_platform.projection import Tables
from tsunagu_platform.relay import OutboxRelay
from tsunagu_platform.sql import upsert
from tsunagu_platform.store import ConcurrencyConflict, EventContext, EventStore, NewEvent
from tsunagu_platform.subscription import subscribe
from tsunagu_platform.tables import inbox
from tsunagu_platform.tables import metadata as platform_metadata

TENANT = "131121"
SOURCE = "/tsunagu/131121/example"
CONSUMER = "example.tally-totals"

example_metadata = MetaData()
tally_totals = Table(
    "tally_totals",
    example_metadata,
    Column("window", String(64), primary_key=True),
    Column("total", Integer, nullable=False),
    Column("events", Integer, nullable=False),
)


async def migrate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(platform_metadata.create_all)
        await conn.run_sync(example_metadata.create_all)


async def add_to_totals(conn: AsyncConnection, table: Table, event: ReceivedEvent) -> None:
    payload = event.payload
    assert isinstance(payload, TallyRecorded)
    current = (
        await conn.execute(select(table.c.total, table.c.events).where(table.c.window == payload.window))
    ).first()
    total, count = (current[0], current[1]) if current else (0, 0)
    await upsert(
        conn,
        table,
        [{"window": payload.window, "total": total + payload.count, "events": count + 1}],
        keys=["window"],
        update=["total", "events"],
    )


async def handle_tally(conn: AsyncConnection, event: ReceivedEvent) -> None:
    await add_to_totals(conn, tally_totals, event)


class TallyTotals:
    """The same sums as a projection, rebuildable from the topic."""

    name = "example.tally_totals"
    topics: Sequence[str] = (EXAMPLE_TOPIC,)

    def define(self, metadata: MetaData, generation: int) -> Tables:
        table = Table(
            f"proj_tally_totals_g{generation}",
            metadata,
            Column("window", String(64), primary_key=True),
            Column("total", Integer, nullable=False),
            Column("events", Integer, nullable=False),
        )
        return {"totals": table}

    async def apply(self, conn: AsyncConnection, tables: Tables, event: ReceivedEvent) -> None:
        if isinstance(event.payload, TallyRecorded):
            await add_to_totals(conn, tables["totals"], event)


async def read_totals(engine: AsyncEngine, table: Table = tally_totals) -> dict[str, tuple[int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(table.c.window, table.c.total, table.c.events).order_by(table.c.window))
        return {w: (int(t), int(e)) for w, t, e in rows}


async def append_tallies(
    engine: AsyncEngine,
    *,
    streams: int,
    events: int,
    count: int = 1,
    prefix: str = "window",
    topic: str = EXAMPLE_TOPIC,
) -> int:
    store = EventStore(engine, topic=topic)
    context = EventContext(tenant=TENANT, source=SOURCE)
    for s in range(streams):
        stream = f"{prefix}-{s}"
        version = await store.current_version(stream)
        batch = [NewEvent(TallyRecorded(window=stream, count=count, category="general")) for _ in range(events)]
        await store.append(stream, version, batch, context)
    return streams * events


async def count_inbox(engine: AsyncEngine, consumer: str = CONSUMER) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(inbox).where(inbox.c.consumer == consumer)
        return int(await conn.scalar(query) or 0)


async def _run_until_signalled(coroutines: Sequence[asyncio.Future[None] | asyncio.Task[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in coroutines:
        task.cancel()


async def run_relay(database_url: str, bootstrap: str) -> None:
    engine = create_engine(database_url)
    await migrate(engine)
    publisher = AiokafkaPublisher(bootstrap)
    await publisher.start()
    relay = OutboxRelay(engine, publisher, service="example", idle_interval=0.05)
    task = asyncio.create_task(relay.run())
    try:
        await _run_until_signalled([task])
    finally:
        relay.stop()
        await publisher.stop()
        await engine.dispose()


async def run_consumer(
    database_url: str, bootstrap: str, slow_ms: int, batch: int, topic: str = EXAMPLE_TOPIC, group: str = CONSUMER
) -> None:
    engine = create_engine(database_url)
    await migrate(engine)
    publisher = AiokafkaPublisher(bootstrap)
    await publisher.start()

    async def handler(conn: AsyncConnection, event: ReceivedEvent) -> None:
        await handle_tally(conn, event)
        if slow_ms:
            await asyncio.sleep(slow_ms / 1000)

    consumer = EventConsumer(group, engine, handler, DeadLetters(publisher, group))
    broker = faststream_broker(bootstrap)
    subscribe(broker, consumer, [topic], group_id=group, max_records=batch)
    await broker.start()
    print("consumer started", flush=True)
    try:
        await _run_until_signalled([])
    finally:
        await broker.stop()
        await publisher.stop()
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tsunagu_platform.example", description=__doc__)
    parser.add_argument("command", choices=["append", "relay", "consume", "topics"])
    parser.add_argument("--database-url", required=False, default="sqlite:///var/example.db")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--streams", type=int, default=5)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--prefix", default="window")
    parser.add_argument("--slow-ms", type=int, default=0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--topic", default=EXAMPLE_TOPIC)
    parser.add_argument("--group", default=CONSUMER, help="consumer name and group id")
    parser.add_argument("--expect-version", type=int, default=None, help="append: fail unless the stream is here")
    args = parser.parse_args(argv)
    configure_logging("example", "INFO")
    if args.command == "append":
        try:
            asyncio.run(_append(args))
        except ConcurrencyConflict as conflict:
            print(f"conflict: {conflict}", file=sys.stderr)
            return 3
    elif args.command == "relay":
        asyncio.run(run_relay(args.database_url, args.bootstrap))
    elif args.command == "consume":
        asyncio.run(run_consumer(args.database_url, args.bootstrap, args.slow_ms, args.batch, args.topic, args.group))
    else:
        asyncio.run(ensure_topics(args.bootstrap, [args.topic, dlq_topic(args.topic)]))
    return 0


async def _append(args: argparse.Namespace) -> None:
    engine = create_engine(args.database_url)
    try:
        await migrate(engine)
        if args.expect_version is None:
            await append_tallies(engine, streams=args.streams, events=args.events, prefix=args.prefix, topic=args.topic)
            return
        store = EventStore(engine, topic=args.topic)
        context = EventContext(tenant=TENANT, source=SOURCE)
        batch = [NewEvent(TallyRecorded(window=args.prefix, count=1, category="general")) for _ in range(args.events)]
        await store.append(args.prefix, args.expect_version, batch, context)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
