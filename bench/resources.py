"""Resources: visit surveys (訪問調査) recorded per second on the embedded default (SQLite file).

Each figure is measured in the same run as its baseline, interleaved and repeated
(medians with min-max), so the ratio survives a noisy machine:

- command: `ResourcesService.record_visit` for a visit to a known resource — load
  the resource's stream, decide in the domain, append `ResourceVisited` with its
  outbox row and the read-model row in one transaction;
- http: the same through the HTTP API (`POST /visits`: token, validation, JSON);
- concurrent: the command from 8 tasks at once (SQLite serialises writers);
- batch: `record_visits` with 50 visits per transaction (`POST /visits/batch`, a survey round);
- baseline: `EventStore.append` of the same event to a new stream (the store's
  floor: no aggregate load, no domain, no read model);
- served_single / served_batch: the service as operators run it (its own process,
  uvicorn, SQLite file, Tansu broker, relay publishing meanwhile; bench/http_load.py)
  taking `POST /visits` from 16 keep-alive connections and `POST /visits/batch` (100
  visits a request) from 4, beside `GET /health/live` on the same server (the HTTP
  stack's own ceiling) and with the server's CPU per visit; the visits table is
  counted afterwards, so a figure never counts a visit that was not stored.

    python -m bench.run --only resources
    BENCH_VISITS=500 BENCH_REPEATS=1 python -m bench.run --only resources   # quick

Target: ≥ 1,000 visits/s on the embedded default.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import structlog
from sqlalchemy import func, select
from tsunagu_events.contracts.resources import ResourceKind, ResourceVisited, VisitCategory
from tsunagu_platform.auth import Role, mint
from tsunagu_platform.db import create_engine
from tsunagu_platform.store import NewEvent
from tsunagu_platform.tansu import TansuBroker
from tsunagu_resources import tables
from tsunagu_resources.app import create_app
from tsunagu_resources.domain.directory import RegisterResource
from tsunagu_resources.domain.surveys import RecordVisit
from tsunagu_resources.service import ResourcesService, new_id
from tsunagu_resources.settings import ResourcesSettings

from bench.http_load import Served, drive, health_requests, request_bytes, service_process

VISITS = int(os.environ.get("BENCH_VISITS", "1000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
CONCURRENCY = 8
BATCH = 50
KEY = "bench-resources-signing-key-0123456789abcdef"
TARGET = 1000.0


def _visit(resource_id: str, i: int) -> RecordVisit:
    return RecordVisit(
        visit_id=new_id("visit"),
        district_id="ikejiri",
        category=VisitCategory.SALON_MINI_DAY,
        visited_on=date(2021, 4, 1 + i % 28),
        resource_id=resource_id,
        findings=("shortage_of_activity_staff",),
        follow_up="担い手の募集を支援",
    )


async def _rate(n: int, run: Callable[[int], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await run(n)
    return n / (time.perf_counter() - started)


async def _measure(var: Path) -> dict[str, list[float]]:
    app = create_app(ResourcesSettings(broker_mode="memory", var_dir=var, token_signing_key=KEY, log_level="WARNING"))
    runtime = app.state.runtime
    service: ResourcesService = app.state.service
    await runtime.migrate()  # no relay: only the write path is measured
    context = service.context("ikejiri.welfare_council_office", "bench")
    resource = await service.register_resource(
        RegisterResource(
            resource_id=new_id("resource"),
            district_id="ikejiri",
            kind=ResourceKind.SALON,
            organization_name="池尻町会",
            service_name="ふれあいサロン",
            effective_on=date(2021, 4, 1),
        ),
        context,
    )
    rid = resource.resource_id
    token = mint(KEY, tenant="131121", agency="ikejiri.welfare_council_office", role=Role.STAFF, staff="bench")

    async def command(n: int) -> None:
        for i in range(n):
            await service.record_visit(_visit(rid, i), context)

    async def concurrent(n: int) -> None:
        async def worker(w: int) -> None:
            for i in range(w, n, CONCURRENCY):
                await service.record_visit(_visit(rid, i), context)

        await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))

    async def batch(n: int) -> None:
        for start in range(0, n, BATCH):
            await service.record_visits([_visit(rid, i) for i in range(start, min(n, start + BATCH))], context)

    async def baseline(n: int) -> None:
        for i in range(n):
            visit = _visit(rid, i)
            payload = ResourceVisited(
                visit_id=visit.visit_id,
                district_id=visit.district_id,
                category=visit.category,
                resource_id=rid,
                visited_on=visit.visited_on,
                fiscal_year=2021,
                findings=list(visit.findings),
                follow_up=visit.follow_up,
            )
            await runtime.store.append(visit.visit_id, 0, [NewEvent(payload)], context)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", headers={"Authorization": f"Bearer {token}"}
    ) as client:

        async def http(n: int) -> None:
            for i in range(n):
                body = {
                    "district_id": "ikejiri",
                    "category": "salon_mini_day",
                    "resource_id": rid,
                    "visited_on": f"2021-04-{1 + i % 28:02d}",
                    "findings": ["shortage_of_activity_staff"],
                }
                response = await client.post("/visits", json=body)
                if response.status_code != 201:
                    raise RuntimeError(f"POST /visits -> {response.status_code}: {response.text[:200]}")

        figures: dict[str, list[float]] = {"command": [], "http": [], "concurrent": [], "batch": [], "baseline": []}
        await command(50)  # warm up
        for _ in range(REPEATS):
            figures["baseline"].append(await _rate(VISITS, baseline))
            figures["command"].append(await _rate(VISITS, command))
            figures["http"].append(await _rate(VISITS // 2, http))
            figures["concurrent"].append(await _rate(VISITS, concurrent))
            figures["batch"].append(await _rate(VISITS, batch))
    await runtime.engine.dispose()
    await runtime.reader.dispose()
    await runtime.keys_engine.dispose()
    return figures


SERVED_BATCH = 100


def _visit_body(rid: str, i: int) -> dict[str, Any]:
    return {
        "district_id": "ikejiri",
        "category": "salon_mini_day",
        "resource_id": rid,
        "visited_on": f"2021-04-{1 + i % 28:02d}",
        "findings": ["shortage_of_activity_staff"],
        "follow_up": "担い手の募集を支援",
    }


async def _stored_visits(var: Path) -> int:
    engine = create_engine(f"sqlite:///{var / 'resources.db'}", for_writes=False)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(tables.visits)) or 0)
    finally:
        await engine.dispose()


async def _served(var: Path, bootstrap: str) -> dict[str, float]:
    token = mint(KEY, tenant="131121", agency="ikejiri.welfare_council_office", role=Role.STAFF, staff="bench")
    with service_process("tsunagu_resources", var, bootstrap, {"TOKEN_SIGNING_KEY": KEY}) as served:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as client:
            created = await client.post(
                "/resources",
                json={
                    "district_id": "ikejiri",
                    "kind": "salon",
                    "organization_name": "池尻町会",
                    "service_name": "ふれあいサロン",
                    "effective_on": "2021-04-01",
                },
                headers={"Authorization": f"Bearer {token}"},
            )
            rid = created.raise_for_status().json()["resource_id"]
        singles = [request_bytes("POST", "/visits", token, _visit_body(rid, i)) for i in range(VISITS)]
        batches = [
            request_bytes(
                "POST", "/visits/batch", token, {"visits": [_visit_body(rid, i + j) for j in range(SERVED_BATCH)]}
            )
            for i in range(0, 3 * VISITS, SERVED_BATCH)
        ]
        await drive(served.port, singles[:50], 16)  # warm up
        health = await _timed(served, health_requests(VISITS), 16)
        single = await _timed(served, singles[50:], 16)
        batch = await _timed(served, batches, 4)
        if not (single["ok"] and batch["ok"] and health["ok"]):
            raise AssertionError(f"requests failed: {single}, {batch}, {health}")
    stored = await _stored_visits(var)
    expected = len(singles) + len(batches) * SERVED_BATCH
    if stored != expected:
        raise AssertionError(f"{stored} visits stored, {expected} sent")
    return {
        "served_health_per_s": health["per_s"],
        "served_single_per_s": single["per_s"],
        "served_single_server_cpu_us": single["cpu_us"],
        "served_batch_per_s": batch["per_s"] * SERVED_BATCH,
        "served_batch_server_cpu_us_per_visit": batch["cpu_us"] / SERVED_BATCH,
    }


async def _timed(served: Served, requests: list[bytes], concurrency: int) -> dict[str, Any]:
    cpu = served.cpu_seconds()
    load = await drive(served.port, requests, concurrency)
    used = served.cpu_seconds() - cpu
    return {
        "per_s": load.per_second,
        "cpu_us": 1e6 * used / load.count,
        "ok": all(200 <= status < 300 for status in load.statuses),
    }


def main() -> dict[str, Any]:
    logging.getLogger().setLevel(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(prefix="bench-resources-") as tmp:
        figures = asyncio.run(_measure(Path(tmp)))
        with TansuBroker() as broker:
            served = asyncio.run(_served(Path(tmp) / "served", broker.bootstrap_servers))
    result: dict[str, Any] = {"visits_per_round": VISITS, "repeats": REPEATS, "database": "sqlite (embedded default)"}
    for name, rates in figures.items():
        result[f"{name}_per_s"] = round(statistics.median(rates))
        result[f"{name}_range"] = [round(min(rates)), round(max(rates))]
    result["command_vs_baseline"] = round(result["command_per_s"] / result["baseline_per_s"], 2)
    result.update({name: round(value) for name, value in served.items()})
    result["meets_target_1000_per_s"] = max(result["command_per_s"], result["served_batch_per_s"]) >= TARGET
    for key, value in result.items():
        print(f"  {key}: {value}", flush=True)
    return result


if __name__ == "__main__":
    main()
