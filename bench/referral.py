"""Referral: transitions per second on the embedded default (SQLite file).

A transition is one command on one referral: request, accept or complete. Each
loads the referral's stream, decides in the pure aggregate and appends the event
with its expected version, its outbox row and the read-model row in one
transaction (sealing is left out: no reason or feedback text is given).

Figures, each beside a baseline measured in the same run:

- service: `ReferralService` commands from CONCURRENCY tasks, each task taking
  its referrals through requested → accepted → completed (3 transitions each);
- http: the same loop through the whole HTTP edge in process (httpx ASGI
  transport: token check, validation, scoping, the command, the response read
  back from the read model), fewer referrals;
- baseline: `EventStore.append` of a ready-made `ReferralAccepted` to a new
  stream, one transaction each, from the same CONCURRENCY tasks (the store's
  floor: no load, no domain, no read model).

    python -m bench.run --only referral
    BENCH_REFERRALS=300 python -m bench.run --only referral   # quick

Target: ≥ 1,000 transitions/s on the embedded default.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import structlog
from sqlalchemy import insert
from tsunagu_events.contracts.common import ConsultationCategory, LegalBasis
from tsunagu_events.contracts.referral import ReferralAccepted, ReferralOutcome
from tsunagu_platform.auth import Role, mint
from tsunagu_platform.store import EventContext, NewEvent
from tsunagu_referral.app import create_app
from tsunagu_referral.referrals import NewReferral, ReferralService
from tsunagu_referral.settings import ReferralSettings
from tsunagu_referral.tables import consents, serving

REFERRALS = int(os.environ.get("BENCH_REFERRALS", "1500"))
HTTP_REFERRALS = int(os.environ.get("BENCH_HTTP_REFERRALS", str(max(REFERRALS // 3, 50))))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
KEY = "bench-referral-signing-key-0123456789abcdef"
FROM, TO = "ikejiri.community_center", "specialist.poverty_support"
PERSON = "person-bench"
DUE = date(2100, 1, 1)


def quiet() -> None:
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


async def give_consent(service: ReferralService) -> None:
    async with service.runtime.engine.begin() as conn:
        await conn.execute(
            insert(consents).values(
                consent_id=f"consent-{uuid.uuid4()}",
                person_id=PERSON,
                scope="referral",
                agency_ids="[]",
                withdrawn=False,
            )
        )
        # The referring window registered the person, so the access policy lets it refer them.
        await conn.execute(insert(serving.registrations).values(person_id=PERSON, agency_id=FROM))


async def service_loop(service: ReferralService, count: int) -> float:
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            queue.pop()
            new = NewReferral(PERSON, FROM, TO, [ConsultationCategory.POVERTY], DUE, LegalBasis.CONSENT)
            referral = await service.request(new, None)
            await service.accept(referral.referral_id, None)
            await service.complete(referral.referral_id, ReferralOutcome.GOT_HELP, None, None)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return 3 * count / (time.perf_counter() - started)


async def http_loop(client: httpx.AsyncClient, count: int) -> float:
    sender = {"Authorization": f"Bearer {mint(KEY, tenant='131121', agency=FROM, role=Role.STAFF, staff='b')}"}
    receiver = {"Authorization": f"Bearer {mint(KEY, tenant='131121', agency=TO, role=Role.STAFF, staff='b')}"}
    body = {"person_id": PERSON, "to_agency_id": TO, "categories": ["poverty"], "due_on": DUE.isoformat()}
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            queue.pop()
            made = await client.post("/referrals", json=body, headers=sender)
            assert made.status_code == 201, made.text
            rid = made.json()["referral_id"]
            assert (await client.post(f"/referrals/{rid}/accept", headers=receiver)).status_code == 200
            done = await client.post(f"/referrals/{rid}/complete", json={"outcome": "got_help"}, headers=receiver)
            assert done.status_code == 200, done.text

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return 3 * count / (time.perf_counter() - started)


async def baseline(service: ReferralService, count: int) -> float:
    runtime = service.runtime
    context = EventContext(tenant="131121", source=runtime.settings.source)
    payload = ReferralAccepted(
        referral_id="referral-x",
        person_id=PERSON,
        from_agency_id=FROM,
        to_agency_id=TO,
        handover_lead=False,
        accepted_at=datetime.now(UTC),
    )
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            queue.pop()
            await runtime.store.append(f"referral-{uuid.uuid4()}", 0, [NewEvent(payload)], context)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return count / (time.perf_counter() - started)


async def measure(var: Path) -> dict[str, Any]:
    settings = ReferralSettings(broker_mode="memory", var_dir=var, token_signing_key=KEY, overdue_interval_seconds=0)
    app = create_app(settings)
    runtime = app.state.runtime
    service: ReferralService = app.state.referrals
    await runtime.migrate()
    runtime.relay.stop()  # nothing is published here: the figures are the command path's
    await give_consent(service)
    samples: dict[str, list[float]] = {"service": [], "http": [], "baseline": []}
    try:
        await service_loop(service, 30)  # warm up
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://referral") as client:
            for _ in range(REPEATS):
                samples["baseline"].append(await baseline(service, REFERRALS))
                samples["service"].append(await service_loop(service, REFERRALS))
                samples["http"].append(await http_loop(client, HTTP_REFERRALS))
    finally:
        await runtime.engine.dispose()
        await runtime.reader.dispose()
        await runtime.keys_engine.dispose()
    figures: dict[str, Any] = {}
    for name, values in samples.items():
        figures[f"{name}_per_s"] = round(statistics.median(values))
        figures[f"{name}_spread"] = [round(min(values)), round(max(values))]
    figures["service_vs_baseline"] = round(figures["service_per_s"] / figures["baseline_per_s"], 2)
    figures["referrals"] = REFERRALS
    figures["http_referrals"] = HTTP_REFERRALS
    figures["concurrency"] = CONCURRENCY
    figures["repeats"] = REPEATS
    figures["target_transitions_per_s"] = 1000
    figures["meets_target"] = figures["service_per_s"] >= 1000
    return figures


def main() -> dict[str, Any]:
    quiet()
    with tempfile.TemporaryDirectory(prefix="bench-referral-") as tmp:
        figures = asyncio.run(measure(Path(tmp)))
    print("referral transitions/s (embedded SQLite, one transaction per command):")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    return figures


if __name__ == "__main__":
    main()
