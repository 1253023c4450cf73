"""Reporting's batch path (`apply_batch`) and the per-event path (`apply`) leave the same tables behind
(the annual facts as the same sums: a batch stores one row per fact key and recording day)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reporting_support import records_of
from sqlalchemy import func, select
from tsunagu_events.contracts.common import ConsultationCategory
from tsunagu_events.contracts.intake import Channel, ConsultationReceived, ConsultedBy, Outcome
from tsunagu_platform.db import create_engine
from tsunagu_platform.projection import ProjectionManager
from tsunagu_platform.tables import metadata as platform_metadata
from tsunagu_reporting.projections import AnnualFacts, Timelines
from tsunagu_reporting.scenario.generator import Scenario, YearPlan
from tsunagu_reporting.scenario.writer import StreamWriter

PLAN = YearPlan(
    fiscal_year=2021,
    community_center=30,
    comprehensive_support_center=40,
    expanded=12,
    welfare_council=9,
    corrected_after_year=4,
    visits={"salon_mini_day": 5},
    resources_identified=3,
    subscribers_added=4,
)


async def contents(manager: ProjectionManager, ignore: set[str]) -> dict[str, list[tuple[Any, ...]]]:
    tables = await manager.tables()
    out = {}
    async with manager.engine.connect() as conn:
        for name, table in tables.items():
            if name == "facts":
                key = [table.c[c] for c in ("fiscal_year", "metric", "dimension", "district_id", "area_id")]
                key += [table.c.recorded_at, table.c.subject]
                dated = [table.c.occurred_on]
                query = select(*key, func.sum(table.c.value), func.min(table.c.occurred_on)).group_by(*key)
                query = query.where(table.c.metric != "subscribers")
                rows = [*(await conn.execute(query)).all()]
                subscribers = select(*key, *dated, func.sum(table.c.value)).group_by(*key, *dated)
                rows += (await conn.execute(subscribers.where(table.c.metric == "subscribers"))).all()
            else:
                columns = [c for c in table.c if c.name not in ignore]
                rows = (await conn.execute(select(*columns))).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


async def test_batch_and_per_event_runners_agree(tmp_path: Path) -> None:
    s = Scenario()
    s.year(PLAN)
    s.case_story(25, datetime(2022, 5, 1, tzinfo=UTC))
    records = records_of(s.writer.out)
    results = []
    for kind, batched in (("batch", True), ("single", False)):
        engine = create_engine(f"sqlite:///{tmp_path / kind}.db")
        async with engine.begin() as conn:
            await conn.run_sync(platform_metadata.create_all)
        found = {}
        for projection in (AnnualFacts(), Timelines()):
            manager = ProjectionManager(engine, projection, "unused:9092", batched=batched)
            await manager.tables()
            runner = manager.runner(1)
            for i in range(0, len(records), 37):
                await runner.apply_records(records[i : i + 37])
            found[projection.name] = await contents(manager, {"id", "seq", "received_at"})
        results.append(found)
        await engine.dispose()
    assert results[0] == results[1]
    assert len(results[0]["reporting.timelines"]["entries"]) == 25


def consultation(writer: StreamWriter, district: str, at: datetime, *, compound_need: bool = False) -> None:
    cid = f"consultation-{uuid.uuid4()}"
    payload = ConsultationReceived(
        consultation_id=cid,
        window_id=f"{district}.community_center",
        window_type="community_center",
        district_id=district,
        area_id="setagaya",
        received_at=at,
        fiscal_year=2021,
        channel=Channel.WALK_IN,
        consulted_by=ConsultedBy.PERSON,
        categories=[ConsultationCategory.ELDERLY_CARE],
        expanded=False,
        compound_need=compound_need,
        outcome=Outcome.INFORMATION_GIVEN,
    )
    writer.emit("intake", cid, payload, at, agency=f"{district}.community_center", staff="staff-t")


async def test_a_batch_stores_one_fact_row_per_key_and_recording_day(tmp_path: Path) -> None:
    writer = StreamWriter()
    morning = datetime(2021, 6, 1, 1, 0, tzinfo=UTC)  # 10:00 in Japan
    for minutes in (0, 5, 10):
        consultation(writer, "ikejiri", morning + timedelta(minutes=minutes), compound_need=minutes == 5)
    consultation(writer, "shimouma", morning)
    consultation(writer, "ikejiri", morning + timedelta(hours=15))  # 01:00 the next day in Japan
    engine = create_engine(f"sqlite:///{tmp_path / 'facts'}.db")
    async with engine.begin() as conn:
        await conn.run_sync(platform_metadata.create_all)
    manager = ProjectionManager(engine, AnnualFacts(), "unused:9092")
    tables = await manager.tables()
    await manager.runner(1).apply_records(records_of(writer.out))
    facts = tables["facts"]
    columns = ("metric", "district_id", "value", "occurred_on", "recorded_at", "subject")
    async with engine.connect() as conn:
        rows = sorted(tuple(r) for r in (await conn.execute(select(*(facts.c[c] for c in columns)))).all())
    await engine.dispose()
    assert rows == [
        ("compound_need", "ikejiri", 1, "2021-06-01", "2021-06-01T14:59:59.999999Z", None),
        ("consultation", "ikejiri", 1, "2021-06-02", "2021-06-02T14:59:59.999999Z", None),
        ("consultation", "ikejiri", 3, "2021-06-01", "2021-06-01T14:59:59.999999Z", None),
        ("consultation", "shimouma", 1, "2021-06-01", "2021-06-01T14:59:59.999999Z", None),
    ]
