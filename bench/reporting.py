"""Reporting rebuilds: events/s for the annual tables and the timelines, beside the raw aiokafka
consume rate of the same topics measured in the same run; a Setagaya-scale fiscal year rebuilt
from the topics; and the case timeline as-of query p99 for a case with 200 events.

    python -m bench.run --only reporting
    BENCH_REPORTING_SCALE=0.1 python -m bench.run --only reporting      # a tenth of the year, quick
    BENCH_REPORTING_DB=postgresql python -m bench.run --only reporting  # into a fresh PostgreSQL database
                                          (on the server of TSUNAGU_TEST_POSTGRES_URL, default local)

The year is the seed's FY2021 at full scale (SEED_FY2021: 249,689 consultations, with 3,382 expanded,
4,864 visits, 4,006 resources identified and the rest) published by the scenario generator onto topics
of its own (3 partitions each), so the broker holds exactly one year.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_platform.cli import tune_gc
from tsunagu_platform.db import create_engine
from tsunagu_platform.kafka import ensure_topics
from tsunagu_platform.projection import ProjectionManager
from tsunagu_platform.tables import metadata as platform_metadata
from tsunagu_platform.tansu import TansuBroker
from tsunagu_reporting import queries
from tsunagu_reporting.domain.timeline import fold_case
from tsunagu_reporting.projections import AnnualFacts, Timelines, source_topics
from tsunagu_reporting.scenario.generator import SEED_FY2021, Scenario, scaled
from tsunagu_reporting.scenario.writer import Published, publish

SCALE = float(os.environ.get("BENCH_REPORTING_SCALE", "1.0"))
DATABASE = os.environ.get("BENCH_REPORTING_DB", "")
AS_OF_QUERIES = int(os.environ.get("BENCH_REPORTING_ASOF_QUERIES", "500"))
CASE_EVENTS = 200


async def raw_consume(bootstrap: str, topics: list[str], expected: int) -> tuple[int, float, float]:
    """aiokafka alone: every record of the topics, no decoding, fetched as the projection runner fetches them.

    Stops at the number of records published (Tansu's ListOffsets answer is not to be trusted)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            if not found:
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(topic) or set()
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        count = 0
        started, cpu = time.perf_counter(), time.process_time()
        deadline = started + 300
        while count < expected and time.perf_counter() < deadline:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=5000)
            count += sum(len(r) for r in fetched.values())
        return count, time.perf_counter() - started, time.process_time() - cpu
    finally:
        await consumer.stop()


async def migrate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(platform_metadata.create_all)


async def rebuild(engine: AsyncEngine, manager: ProjectionManager) -> tuple[int, float, float]:
    """Events, wall seconds and this process's CPU seconds (the figure that other load on the machine
    disturbs least; the broker runs in its own process)."""
    started, cpu = time.perf_counter(), time.process_time()
    final = await manager.rebuild(progress=lambda p: print(f"   … {p.describe()}", flush=True), report_every=5.0)
    return final.events_done, time.perf_counter() - started, time.process_time() - cpu


async def as_of_latencies(
    engine: AsyncEngine, manager: ProjectionManager, case: str, moments: list[datetime]
) -> tuple[list[float], list[float]]:
    """What GET /timelines/cases/{id}?as_of= does besides HTTP (the query, decoding, the case fold),
    interleaved with a bare `SELECT 1` on the same engine: the machine's own latency tail."""
    tables = await manager.tables()
    out, floor = [], []
    for moment in moments:
        started = time.perf_counter()
        entries = await queries.timeline(engine, tables, case_id=case, as_of=moment)
        fold_case(case, [(e.event_type, e.data) for e in entries])
        out.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        floor.append((time.perf_counter() - started) * 1000)
    return out, floor


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(bootstrap: str, workdir: Path) -> dict[str, Any]:
    suffix = f".bench{uuid.uuid4().hex[:8]}"
    topics = list(source_topics(suffix))
    await ensure_topics(bootstrap, topics, partitions=3)
    plan = scaled(SEED_FY2021, SCALE) if SCALE != 1.0 else SEED_FY2021
    scenario = Scenario()
    started = time.perf_counter()
    scenario.year(plan)
    start = datetime(2021, 11, 1, 1, 0, tzinfo=UTC)
    _person, case = scenario.case_story(CASE_EVENTS, start)
    items = [Published(p.topic + suffix, p.envelope) for p in scenario.writer.out]
    print(f"   generated {len(items):,} events in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    await publish(bootstrap, items)
    print(f"   published in {time.perf_counter() - started:.1f} s", flush=True)

    published = len(items)
    del items, scenario  # hold no copy of the year while measuring (its garbage collection would show as latency)
    gc.collect()
    tune_gc()  # as in a service process (tsunagu_platform.cli), where rebuilds run
    raw = [await raw_consume(bootstrap, topics, published) for _ in range(2)]
    raw_rate = statistics.median(c / s for c, s, _ in raw)
    raw_cpu = statistics.median(cpu / c * 1e6 for c, _, cpu in raw)
    print(
        f"   raw aiokafka consume: {raw_rate:,.0f} records/s ({raw[0][0]:,} records), {raw_cpu:.1f} µs CPU per record",
        flush=True,
    )

    url = DATABASE or f"sqlite:///{workdir / 'reporting-bench.db'}"
    if DATABASE:
        from tsunagu_platform.testing import create_postgres_database

        url = await create_postgres_database()
    engine = create_engine(url)
    await migrate(engine)
    figures: dict[str, Any] = {
        "events": published,
        "consultations": plan.community_center + plan.comprehensive_support_center + plan.welfare_council,
        "database": "postgresql" if DATABASE else "sqlite",
        "raw_aiokafka_records_per_s": round(raw_rate),
        "raw_aiokafka_cpu_us_per_record": round(raw_cpu, 1),
    }
    try:
        for name, projection in (
            ("annual", AnnualFacts(topic_suffix=suffix)),
            ("timelines", Timelines(topic_suffix=suffix)),
        ):
            manager = ProjectionManager(engine, projection, bootstrap, max_records=5000)
            done, seconds, cpu = await rebuild(engine, manager)
            figures[f"{name}_rebuild_events"] = done
            figures[f"{name}_rebuild_seconds"] = round(seconds, 1)
            figures[f"{name}_rebuild_events_per_s"] = round(done / seconds)
            figures[f"{name}_rebuild_cpu_us_per_event"] = round(cpu / done * 1e6, 1)
            figures[f"{name}_vs_raw"] = round(done / seconds / raw_rate, 3)
            print(
                f"   {name} rebuild: {done:,} events in {seconds:.1f} s = {done / seconds:,.0f}/s, "
                f"{cpu / done * 1e6:.1f} µs CPU per event",
                flush=True,
            )
            if name == "timelines":
                rng = random.Random(7)
                moments = [start + timedelta(minutes=rng.uniform(0, CASE_EVENTS * 1.3)) for _ in range(AS_OF_QUERIES)]
                latencies, floor = await as_of_latencies(engine, manager, case, moments)
                figures["as_of_p50_ms"] = round(percentile(latencies, 50), 2)
                figures["as_of_p99_ms"] = round(percentile(latencies, 99), 2)
                figures["select_1_p50_ms"] = round(percentile(floor, 50), 2)
                figures["select_1_p99_ms"] = round(percentile(floor, 99), 2)
                print(
                    f"   timeline as-of (200-event case): p50 {figures['as_of_p50_ms']} ms, "
                    f"p99 {figures['as_of_p99_ms']} ms over {len(latencies)} queries; "
                    f"baseline SELECT 1: p50 {figures['select_1_p50_ms']} ms, p99 {figures['select_1_p99_ms']} ms",
                    flush=True,
                )
    finally:
        await engine.dispose()
        if DATABASE:
            from tsunagu_platform.testing import drop_postgres_database

            await drop_postgres_database(url)
    return figures


def main() -> dict[str, Any]:
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(prefix="bench-reporting-") as tmp:
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if external:
            return asyncio.run(run(external, Path(tmp)))
        with TansuBroker(log_path=Path(tmp) / "tansu.log") as broker:
            return asyncio.run(run(broker.bootstrap_servers, Path(tmp)))


if __name__ == "__main__":
    print(main())
