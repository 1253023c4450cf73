"""Intake's inbound consumer: a batch with 1 % bad reports against a clean batch, in the same run.

One bad report used to fail the whole batch (1,400–2,000 records), which was then retried one
transaction per report: 118 reports/s instead of ~400/s. Now the consumer refuses bad reports before
the batch's transaction (`AgencyInbound.refuse`: a source not registered with the report's window, an
unknown window, an unknown or erased person) and isolates what it cannot foresee by halving the
batch. Three figures, each from the same records handed to the consumer in the service's batches
(`consumer_batch`, 2,000), on a fresh SQLite database each, rounds alternating:

- clean: every report valid;
- bad_refused: 1 % of the reports bad in ways the consumer refuses up front (a quarter each: a
  hospital's source reporting for the window, an unknown window, an unknown person id, an erased
  person);
- bad_unforeseen: 1 % of the reports failing inside the command only (simulated: the command raises a
  DomainError for them), found by halving the batch: what a kind of bad report nobody anticipated costs.

Each figure is the median over ROUNDS rounds of valid reports applied per second (the bad ones are
dead-lettered, not counted) and the ratio to clean; the target is ≥ 0.8 (within 20 %).

    python -m bench.run --only inbound_bad_records
    BENCH_BAD_REPORTS=4000 BENCH_ROUNDS=3 python -m bench.run --only inbound_bad_records
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import func, select
from tsunagu_events import Actor, EventEnvelope, to_kafka
from tsunagu_events.topics import INTAKE_INBOUND
from tsunagu_intake.app import create_app
from tsunagu_intake.domain.errors import DomainError
from tsunagu_intake.settings import IntakeSettings
from tsunagu_intake.tables import consultations
from tsunagu_intake.use_cases import PlainDetails
from tsunagu_platform.cli import tune_gc
from tsunagu_platform.consumer import EventConsumer, IncomingRecord

N = int(os.environ.get("BENCH_BAD_REPORTS", "6000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BATCH = IntakeSettings.model_fields["consumer_batch"].default
BAD_EVERY = 100  # 1 %
KEY = "bench-intake-signing-key-0123456789abcdef"
WINDOW = "ikejiri.comprehensive_support_center"
WARM_UP = 200
TARGET_RATIO = 0.8


def _report(
    i: int, *, window: str = WINDOW, source: str | None = None, person: dict[str, Any] | None = None
) -> EventEnvelope:
    data: dict[str, Any] = {
        "window_id": window,
        "received_at": "2026-06-01T09:30:00+09:00",
        "channel": "phone",
        "consulted_by": "family",
        "categories": ["elderly_care", "withdrawal"] if i % 2 else ["poverty"],
        "outcome": "continued_support",
        "summary": f"相談内容 {i}",
    }
    if person is not None:
        data["person"] = person
    return EventEnvelope(
        id=str(uuid.uuid4()),
        source=source or f"/agency/{WINDOW}/bench",
        type="tsunagu.agency.ConsultationReported",
        time=datetime.now(UTC),
        tenant="131121",
        data=data,
    )


UNFORESEEN = "unforeseen-bad-report"


def _bad(i: int, kind: str, erased: str) -> EventEnvelope:
    if kind == "bad_unforeseen":
        report = _report(i)
        return report.model_copy(update={"data": {**report.data, "summary": UNFORESEEN}})
    which = (i // BAD_EVERY) % 4
    if which == 0:
        return _report(i, source="/agency/specialist.hospital")
    if which == 1:
        return _report(i, window="nowhere.window", source="/agency/nowhere.window")
    if which == 2:
        return _report(i, person={"person_id": f"person-unknown-{i}"})
    return _report(i, person={"person_id": erased})


def _fail_unforeseen(intake: Any) -> None:
    """Make the command refuse the reports marked UNFORESEEN, as a rule nobody checks up front would."""
    original = intake.receive_reported

    async def receive_reported(conn: Any, reports: Any) -> Any:
        if any(r.consultation.summary == UNFORESEEN for r in reports):
            raise DomainError("unforeseen")
        return await original(conn, reports)

    intake.receive_reported = receive_reported


async def _round(kind: str) -> float:
    with tempfile.TemporaryDirectory(prefix="tsunagu-bench-bad-") as tmp:
        app = create_app(
            IntakeSettings(var_dir=Path(tmp), token_signing_key=KEY, log_level="WARNING", broker_mode="memory")
        )
        runtime = app.state.runtime
        await runtime.migrate()
        intake = app.state.intake
        actor = Actor(agency=WINDOW, staff="bench")
        erased = (await intake.register_person(PlainDetails(name="消去 太郎"), None, actor)).stream_id
        await intake.erase_person(erased, actor)
        consumer: EventConsumer = next(c for c in runtime.consumers if c.name == "intake.agency-inbound")
        consumer.dead_letters.publisher = _Discard()  # dead letters are not what is measured
        if kind == "bad_unforeseen":
            _fail_unforeseen(intake)
        envelopes = []
        for i in range(N + WARM_UP):
            bad = kind != "clean" and i >= WARM_UP and i % BAD_EVERY == BAD_EVERY // 2
            envelopes.append(_bad(i, kind, erased) if bad else _report(i))
        records = []
        for i, envelope in enumerate(envelopes):
            _key, headers, value = to_kafka(envelope)
            records.append(IncomingRecord(INTAKE_INBOUND, 0, i, None, value, tuple(headers)))
        await consumer.handle_batch(records[:WARM_UP])
        tune_gc()
        before = await _count(app)
        started = time.perf_counter()
        for start in range(WARM_UP, N + WARM_UP, BATCH):
            await consumer.handle_batch(records[start : start + BATCH])
        elapsed = time.perf_counter() - started
        applied = await _count(app) - before
        await runtime.stop()
        return applied / elapsed


class _Discard:
    async def publish(self, _messages: Any) -> None:
        return None


async def _count(app: Any) -> int:
    async with app.state.runtime.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(consultations)) or 0)


async def _all() -> dict[str, Any]:
    kinds = ("clean", "bad_refused", "bad_unforeseen")
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(ROUNDS):  # alternating, so a busy moment of the machine hits every kind alike
        for kind in kinds:
            rates[kind].append(await _round(kind))
    clean = statistics.median(rates["clean"])
    result: dict[str, Any] = {"reports": N, "batch": BATCH, "rounds": ROUNDS}
    for kind in kinds:
        median = statistics.median(rates[kind])
        result[f"{kind}_per_s"] = round(median)
        result[f"{kind}_rounds_per_s"] = [round(r) for r in rates[kind]]
        if kind != "clean":
            result[f"{kind}_ratio"] = round(median / clean, 3)
            result[f"{kind}_target_met"] = median / clean >= TARGET_RATIO
    return result


def main() -> dict[str, Any]:
    logging.getLogger().setLevel(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = asyncio.run(_all())
    for name, value in result.items():
        print(f"  {name:32} {value}")
    return result


if __name__ == "__main__":
    main()
