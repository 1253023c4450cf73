"""`EventConsumer.handle_batch` alone: CPU µs per event on SQLite, records in memory (no broker).

What the backbone's "consumer with inbox" figure measures without the Kafka fetch and with garbage
collected before each round, so that an A/B of the consumer's own code is not lost in the fetch's and the
collector's variance (docs/benchmarks.md, "Stream safety"). 20,000 `TallyRecorded` events of 200 streams,
in batches of 2,000 (the services' `consumer_batch`), no-op handler: inbox, stream versions and hash links,
positions. `interleaved`: the streams' events mixed as several producers would; `consecutive`: each
stream's events together, as one partition holds them. Each figure is the median of ROUNDS fresh consumers.

    python -m bench.run --only consumer_batch
    # A/B against another checkout, alternating processes:
    PYTHONPATH=<copy>/libs/platform/src:<copy>/libs/events/src python -m bench.run --only consumer_batch
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import statistics
import tempfile
import time
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import to_kafka
from tsunagu_events.contracts.example import TallyRecorded
from tsunagu_platform.consumer import DeadLetters, EventConsumer, IncomingRecord, ReceivedEvent
from tsunagu_platform.db import create_engine
from tsunagu_platform.store import EventContext, EventStore, NewEvent
from tsunagu_platform.tables import metadata

STREAMS, PER_STREAM, BATCH = 200, 100, 2000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


class _Discard:
    async def publish(self, _messages: Any) -> None:
        return None


async def _noop(_conn: AsyncConnection, _event: ReceivedEvent) -> None:
    return None


async def _run() -> dict[str, Any]:
    result: dict[str, Any] = {"events": STREAMS * PER_STREAM, "batch": BATCH, "rounds": ROUNDS}
    with tempfile.TemporaryDirectory(prefix="tsunagu-bench-consumer-") as folder:
        engine = create_engine(f"sqlite:///{folder}/bench.db")
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        store = EventStore(engine, topic="bench")
        context = EventContext(tenant="131121", source="/tsunagu/131121/example")
        records: list[IncomingRecord] = []
        for s in range(STREAMS):
            events = [NewEvent(TallyRecorded(window="w", count=1, category="general")) for _ in range(PER_STREAM)]
            for envelope in await store.append(f"stream-{s}", 0, events, context):
                key, headers, value = to_kafka(envelope)
                records.append(IncomingRecord("bench", 0, len(records), key, value, tuple(headers)))
        orders = {
            "interleaved": sorted(records, key=lambda r: (r.offset % PER_STREAM, r.offset)),
            "consecutive": records,
        }
        warm = EventConsumer("bench.warm", engine, _noop, DeadLetters(_Discard(), "bench.warm"))
        await warm.handle_batch(records[:BATCH])  # statements compiled, caches filled, as in a running service
        for order, ordered in orders.items():
            figures = []
            for round_ in range(ROUNDS):
                name = f"bench.{order}.{round_}"
                consumer = EventConsumer(name, engine, _noop, DeadLetters(_Discard(), name))
                gc.collect()
                cpu = time.process_time()
                for start in range(0, len(ordered), BATCH):
                    await consumer.handle_batch(ordered[start : start + BATCH])
                figures.append(1e6 * (time.process_time() - cpu) / len(ordered))
            result[f"{order}_cpu_us_per_event"] = round(statistics.median(figures), 2)
            result[f"{order}_rounds"] = [round(f, 2) for f in figures]
        await engine.dispose()
    return result


def main() -> dict[str, Any]:
    logging.getLogger().setLevel(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = asyncio.run(_run())
    for name, value in result.items():
        print(f"  {name:32} {value}")
    return result


if __name__ == "__main__":
    main()
