"""Reporting's batch path (`apply_batch`) and the per-event path (`apply`) leave the same tables behind."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reporting_support import records_of
from sqlalchemy import select
from tsunagu_platform.db import create_engine
from tsunagu_platform.projection import ProjectionManager
from tsunagu_platform.tables import metadata as platform_metadata
from tsunagu_reporting.projections import AnnualFacts, Timelines
from tsunagu_reporting.scenario.generator import Scenario, YearPlan

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
