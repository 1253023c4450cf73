"""Intake: consultations per second on the embedded default (SQLite file, Tansu broker).

Figures, each with a baseline measured in the same run:

- served_http: `POST /consultations` to the service as operators run it (its own
  process, uvicorn with uvloop/httptools, the SQLite file, the Tansu broker, relay
  publishing meanwhile; bench/http_load.py) from CONCURRENCY keep-alive connections
  of a thin client in this process: token check, validation, sealing the summary
  under a new key, deciding, appending event + outbox + read-model row — concurrent
  requests committed together (group commit). Beside it `GET /health/live` on the
  same server (the HTTP stack's own ceiling here) and the server's CPU per request;
  the consultations table is counted afterwards;
- http_in_process: the same requests through httpx's ASGI transport in this
  process (client and service share one core: a floor, kept for comparison with
  earlier runs);
- inbound_consumer: `ConsultationReported` records handed to the inbound
  consumer in the service's batches (`consumer_batch`, 2,000: decode, inbox,
  keys of the batch in one key-store transaction, seal, decide, append — one
  transaction per batch), no broker in between; also its CPU time per record
  (`time.process_time`, the figure to compare across runs on a busy machine);
- inbound_topic: the same records produced to `tsunagu.intake.inbound` on a real
  Tansu broker and consumed by the running service (faststream subscriber, relay
  publishing the results meanwhile): records applied per second of batch
  processing (the consumer's batch-seconds histogram), and the wall clock from
  starting the service to the first and to the last record applied (both include
  the consumer-group joins, seconds each on Tansu);
- baseline: `EventStore.append` of a ready-made `ConsultationReceived` to a new
  stream, one transaction each (the store's floor: no HTTP, no sealing, no domain).

    python -m bench.run --only intake
    BENCH_CONSULTATIONS=500 python -m bench.run --only intake   # quick

Targets: ≥ 1,000/s over HTTP, ≥ 5,000/s from the inbound topic.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from tsunagu_events import EventEnvelope, to_kafka
from tsunagu_events.contracts.intake import ConsultationReceived
from tsunagu_events.topics import INTAKE_INBOUND, dlq_topic
from tsunagu_intake.app import create_app
from tsunagu_intake.settings import IntakeSettings
from tsunagu_intake.tables import consultations
from tsunagu_platform.auth import Role, mint
from tsunagu_platform.cli import tune_gc
from tsunagu_platform.consumer import EventConsumer, IncomingRecord
from tsunagu_platform.db import create_engine
from tsunagu_platform.kafka import ensure_topics
from tsunagu_platform.store import EventContext, NewEvent
from tsunagu_platform.tansu import TansuBroker

from bench.http_load import drive, health_requests, request_bytes, service_process

N = int(os.environ.get("BENCH_CONSULTATIONS", "2000"))
CONCURRENCY = 16
BATCH = IntakeSettings.model_fields["consumer_batch"].default  # what the service passes to subscribe()
KEY = "bench-intake-signing-key-0123456789abcdef"
WINDOW = "ikejiri.comprehensive_support_center"
HTTP_TARGET, INBOUND_TARGET = 1000.0, 5000.0
WARM_UP = 200


def _body(i: int) -> dict[str, Any]:
    return {
        "window_id": WINDOW,
        "received_at": "2026-06-01T09:30:00+09:00",
        "channel": "phone",
        "consulted_by": "family",
        "categories": ["elderly_care", "withdrawal"] if i % 2 else ["poverty"],
        "outcome": "continued_support",
        "summary": f"相談内容 {i}",
    }


def _reported(i: int) -> EventEnvelope:
    return EventEnvelope(
        id=str(uuid.uuid4()),
        source=f"/agency/{WINDOW}/bench",
        type="tsunagu.agency.ConsultationReported",
        time=datetime.now(UTC),
        tenant="131121",
        data=_body(i),
    )


def _settings(var: Path, **extra: Any) -> IntakeSettings:
    return IntakeSettings(var_dir=var, token_signing_key=KEY, log_level="WARNING", **extra)


async def _count(app: Any) -> int:
    async with app.state.runtime.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(consultations)) or 0)


async def _http(var: Path) -> float:
    app = create_app(_settings(var, broker_mode="memory"))
    runtime = app.state.runtime
    await runtime.migrate()  # no relay: the write path only
    headers = {"Authorization": f"Bearer {mint(KEY, tenant='131121', agency=WINDOW, role=Role.STAFF, staff='b')}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        for i in range(20):  # warm-up
            (await client.post("/consultations", json=_body(i), headers=headers)).raise_for_status()
        queue = iter(range(N))

        async def worker() -> None:
            for i in queue:
                (await client.post("/consultations", json=_body(i), headers=headers)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    assert await _count(app) == N + 20
    await runtime.stop()
    return N / elapsed


async def _baseline(var: Path) -> float:
    app = create_app(_settings(var, broker_mode="memory"))
    runtime = app.state.runtime
    await runtime.migrate()
    context = EventContext(tenant="131121", source="/tsunagu/131121/intake")
    payload = ConsultationReceived(
        consultation_id="c",
        window_id=WINDOW,
        window_type="comprehensive_support_center",
        district_id="ikejiri",
        area_id="setagaya",
        received_at=datetime.now(UTC),
        fiscal_year=2026,
        channel="phone",
        consulted_by="family",
        categories=["poverty"],
        expanded=True,
        compound_need=False,
        outcome="continued_support",
    )
    started = time.perf_counter()
    for i in range(N):
        await runtime.store.append(f"consultation-{i}", 0, [NewEvent(payload)], context)
    elapsed = time.perf_counter() - started
    await runtime.stop()
    return N / elapsed


async def _inbound_consumer(var: Path) -> tuple[float, float]:
    app = create_app(_settings(var, broker_mode="memory"))
    runtime = app.state.runtime
    await runtime.migrate()
    consumer: EventConsumer = next(c for c in runtime.consumers if c.name == "intake.agency-inbound")
    records = []
    for i in range(N + WARM_UP):
        _key, headers, value = to_kafka(_reported(i))
        records.append(IncomingRecord(INTAKE_INBOUND, 0, i, None, value, tuple(headers)))
    # As a service process runs: statements compiled and caches filled by a first batch, GC tuned.
    await consumer.handle_batch(records[:WARM_UP])
    tune_gc()
    records = records[WARM_UP:]
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, N, BATCH):
        await consumer.handle_batch(records[start : start + BATCH])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert await _count(app) == N + WARM_UP
    await runtime.stop()
    return N / elapsed, cpu / N * 1e6


async def _inbound_topic(var: Path, bootstrap: str) -> dict[str, float]:
    await ensure_topics(bootstrap, [INTAKE_INBOUND, dlq_topic(INTAKE_INBOUND)], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for i in range(N):
            _key, headers, value = to_kafka(_reported(i))
            await producer.send(INTAKE_INBOUND, value, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()
    app = create_app(_settings(var, kafka_bootstrap_servers=bootstrap, topic_partitions=1))
    runtime = app.state.runtime
    busy_before = _batch_seconds()
    started = time.perf_counter()
    await runtime.start()
    try:
        first = await _until(lambda n: n > 0, app, timeout=120)
        last = await _until(lambda n: n >= N, app, timeout=300)
        done = await _count(app)
    finally:
        await runtime.stop()
    busy = _batch_seconds() - busy_before
    return {
        "per_second": round(done / busy) if busy else 0,
        "start_to_first_applied_s": round(first - started, 1),
        "start_to_all_applied_s": round(last - started, 1),
        "applied": done,
    }


def _batch_seconds() -> float:
    value = REGISTRY.get_sample_value("tsunagu_consumer_batch_seconds_sum", {"consumer": "intake.agency-inbound"})
    return float(value or 0.0)


async def _until(check: Callable[[int], bool], app: Any, timeout: float) -> float:
    """The moment the consultation count first satisfies `check` (polled every 5 ms)."""
    deadline = time.perf_counter() + timeout
    count = await _count(app)
    while not check(count) and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
        count = await _count(app)
    return time.perf_counter()


async def _served_http(var: Path, bootstrap: str) -> dict[str, float]:
    token = mint(KEY, tenant="131121", agency=WINDOW, role=Role.STAFF, staff="b")
    requests = [request_bytes("POST", "/consultations", token, _body(i)) for i in range(N + 50)]
    with service_process("tsunagu_intake", var, bootstrap, {"TOKEN_SIGNING_KEY": KEY}) as served:
        await drive(served.port, requests[:50], CONCURRENCY)  # warm up
        cpu = served.cpu_seconds()
        health = await drive(served.port, health_requests(N), CONCURRENCY)
        health_cpu = served.cpu_seconds() - cpu
        cpu = served.cpu_seconds()
        load = await drive(served.port, requests[50:], CONCURRENCY)
        used = served.cpu_seconds() - cpu
    if set(load.statuses) != {201} or set(health.statuses) != {200}:
        raise AssertionError(f"requests failed: {load.statuses}, {health.statuses}")
    engine = create_engine(f"sqlite:///{var / 'intake.db'}", for_writes=False)
    try:
        async with engine.connect() as conn:
            stored = int(await conn.scalar(select(func.count()).select_from(consultations)) or 0)
    finally:
        await engine.dispose()
    if stored != N + 50:
        raise AssertionError(f"{stored} consultations stored, {N + 50} sent")
    return {
        "per_s": load.per_second,
        "server_cpu_us": 1e6 * used / load.count,
        "health_per_s": health.per_second,
        "health_server_cpu_us": 1e6 * health_cpu / health.count,
    }


async def _all() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tsunagu-bench-intake-") as folder:
        root = Path(folder)
        baseline = await _baseline(root / "baseline")
        http = await _http(root / "http")
        consumer, consumer_cpu_us = await _inbound_consumer(root / "consumer")
        with TansuBroker() as broker:
            topic = await _inbound_topic(root / "topic", broker.bootstrap_servers)
            served = await _served_http(root / "served", broker.bootstrap_servers)
    return {
        "consultations": N,
        "baseline_store_append_per_s": round(baseline),
        "served_http_per_s": round(served["per_s"]),
        "served_http_server_cpu_us_per_request": round(served["server_cpu_us"]),
        "served_health_per_s": round(served["health_per_s"]),
        "served_health_server_cpu_us_per_request": round(served["health_server_cpu_us"]),
        "http_in_process_per_s": round(http),
        "http_concurrency": CONCURRENCY,
        "inbound_consumer_per_s": round(consumer),
        "inbound_consumer_cpu_us_per_record": round(consumer_cpu_us),
        "inbound_topic_per_s": topic["per_second"],
        "inbound_topic_start_to_first_applied_s": topic["start_to_first_applied_s"],
        "inbound_topic_start_to_all_applied_s": topic["start_to_all_applied_s"],
        "http_target_met": served["per_s"] >= HTTP_TARGET,
        "inbound_target_met": topic["per_second"] >= INBOUND_TARGET,
    }


def main() -> dict[str, Any]:
    logging.getLogger().setLevel(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = asyncio.run(_all())
    for name, value in result.items():
        print(f"  {name:32} {value}")
    return result


if __name__ == "__main__":
    main()
