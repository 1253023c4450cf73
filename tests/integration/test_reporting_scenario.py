"""Reporting end to end: a scenario published onto the topics, the real reporting process on the
real broker, on SQLite and PostgreSQL.

The scenario generator writes three fiscal years of activity with known totals (FY2016 opens in
July, so it is partial) and a companion-support case; the tables must match to the digit, side by
side, by district, and as they stood on 31 March; a timeline asked "as of" a past moment must equal
the one that was live then; a forged event replayed on a topic must be found and located; a full
rebuild must equal the live projections while reads keep answering.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tsunagu_platform.auth import Role, mint
from tsunagu_platform.kafka import ensure_topics
from tsunagu_platform.tansu import free_port
from tsunagu_reporting.projections import source_topics
from tsunagu_reporting.scenario.generator import Scenario, YearPlan
from tsunagu_reporting.scenario.writer import Published, forged_copy, publish

from .processes import Process, eventually

pytestmark = pytest.mark.integration

KEY = "reporting-integration-signing-key-0123456789"
TOKEN = mint(KEY, tenant="131121", agency="setagaya.branch_office", role=Role.ADMIN, staff="it-admin")
ADMIN = {"Authorization": f"Bearer {TOKEN}"}

FY2016 = YearPlan(
    fiscal_year=2016,
    community_center=215,
    comprehensive_support_center=311,
    expanded=99,
    welfare_council=31,
    first_month=7,
)
FY2020 = YearPlan(
    fiscal_year=2020,
    community_center=10,
    comprehensive_support_center=10,
    expanded=1,
    welfare_council=10,
    visits={"salon_mini_day": 248, "school_facility_nursery": 99, "business_npo": 90},
    resources_identified=378,
    usable_places=37,
    place_uses=23,
    subscribers_added=300,
)
FY2021 = YearPlan(
    fiscal_year=2021,
    community_center=235,
    comprehensive_support_center=402,
    expanded=33,
    welfare_council=35,
    corrected_after_year=7,
    visits={"salon_mini_day": 240, "school_facility_nursery": 128, "business_npo": 117},
    resources_identified=400,
    usable_places=41,
    place_uses=25,
    newsletter_issues=162,
    subscribers_added=276,
    groups_introduced=111,
)


CONSULTATIONS = {
    "community_center": {"2016": 215, "2021": 235},
    "comprehensive_support_center": {"2016": 311, "2021": 402},
    "expanded_consultation": {"2016": 99, "2021": 33},
    "welfare_council": {"2016": 31, "2021": 35},
}
RESOURCES_2021 = {
    "visits.salon_mini_day": "240 (248)",
    "visits.school_facility_nursery": "128 (99)",
    "visits.business_npo": "117 (90)",
    "visits.total": "485 (437)",
    "resources_identified": "400 (378)",
    "usable_places": "41 (37)",
    "place_uses": "25 (23)",
}
PUBLICITY_2021 = {"newsletter_issues": {"2021": 162}, "subscribers": {"2021": 576}, "groups_introduced": {"2021": 111}}


class Reporting:
    def __init__(self, tmp_path: Path, database_url: str, bootstrap: str, suffix: str) -> None:
        self.port = free_port()
        self.process = Process(
            [sys.executable, "-m", "tsunagu_reporting", "serve"],
            tmp_path,
            f"reporting-{self.port}",
            env={
                "PORT": str(self.port),
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "DATABASE_URL": database_url,
                "TSUNAGU_VAR_DIR": str(tmp_path),
                "TSUNAGU_TOKEN_SIGNING_KEY": KEY,
                "TSUNAGU_REPORTING_TOPIC_SUFFIX": suffix,
                "LOG_LEVEL": "WARNING",
            },
        )
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", headers=ADMIN, timeout=60)

    async def ready(self) -> bool:
        try:
            return (await self.client.get("/health/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def reporting(tmp_path: Path, database_url: str, kafka_bootstrap: str) -> AsyncIterator[Reporting]:
    suffix = f".it{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, list(source_topics(suffix)), partitions=3)
    service = Reporting(tmp_path, database_url, kafka_bootstrap, suffix)
    service.process.start()
    try:
        await eventually(service.ready, timeout=60, what=f"reporting ready\n{service.process.output()[-2000:]}")
        yield service
    finally:
        await service.client.aclose()
        service.process.stop()


def suffixed(items: list[Published], suffix: str) -> list[Published]:
    return [Published(i.topic + suffix, i.envelope) for i in items]


def ward_values(body: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {r["item"]: r["values"] for r in body["rows"] if r["group_id"] == "ward"}


async def test_tables_timelines_audit_and_rebuild_from_the_topics(reporting: Reporting, kafka_bootstrap: str) -> None:
    suffix = reporting.process.env["TSUNAGU_REPORTING_TOPIC_SUFFIX"]
    scenario = Scenario()
    for plan in (FY2016, FY2020, FY2021):
        scenario.year(plan)
    mark = len(scenario.writer.out)
    _person, case = scenario.case_story(40, datetime(2022, 6, 1, 1, 0, tzinfo=UTC))
    story = scenario.writer.out[mark:]
    first_story, later_story = story[:20], story[20:]
    rest = scenario.writer.out[:mark]
    await publish(kafka_bootstrap, suffixed(rest + first_story, suffix))

    # The tables, side by side, to the digit.
    async def tables_caught_up() -> bool:
        body = await reporting.get("/reports/consultations", fiscal_years=[2016, 2021])
        if ward_values(body) != CONSULTATIONS:
            return False
        resources = await reporting.get("/reports/resource-development", fiscal_year=2021)
        display = {r["item"]: r["display"]["2021"] for r in resources["rows"] if r["group_id"] == "ward"}
        publicity = ward_values(await reporting.get("/reports/publicity", fiscal_year=2021))
        return display == RESOURCES_2021 and publicity == PUBLICITY_2021

    await eventually(tables_caught_up, timeout=90, what="the annual tables")
    body = await reporting.get("/reports/consultations", fiscal_years=[2016, 2021])
    assert ward_values(body) == CONSULTATIONS
    years = {y["fiscal_year"]: y for y in body["fiscal_years"]}
    assert years[2016]["label_ja"] == "平成28年度"
    assert years[2016]["note_ja"] == "平成28年度は7月からの9か月分"
    assert years[2021]["label_ja"] == "令和3年度"
    assert not years[2021]["partial"]
    by_district = await reporting.get("/reports/consultations", fiscal_years=[2021], by="district")
    for row in by_district["rows"]:
        if row["item"] == "community_center":
            assert (
                row["values"]["2021"]
                == scenario.expected.district[(row["group_id"], 2021, "consultation", "community_center")]
            )
    on_31_march = await reporting.get("/reports/consultations", fiscal_years=[2021], as_of="2022-03-31")
    assert ward_values(on_31_march)["expanded_consultation"] == {"2021": 26}
    resources = await reporting.get("/reports/resource-development", fiscal_year=2021)
    display = {r["item"]: r["display"]["2021"] for r in resources["rows"] if r["group_id"] == "ward"}
    assert display == RESOURCES_2021
    publicity = ward_values(await reporting.get("/reports/publicity", fiscal_year=2021))
    assert publicity == {
        "newsletter_issues": {"2021": 162},
        "subscribers": {"2021": 576},
        "groups_introduced": {"2021": 111},
    }
    download = await reporting.client.get(
        "/reports/consultations", params={"fiscal_years": [2016, 2021], "format": "csv"}
    )
    assert download.content.decode("utf-8-sig").splitlines()[0] == "区,項目,平成28年度,令和3年度"

    # The timeline live now, recorded, then asked for "as of" this moment after more events.
    async def story_caught_up(count: int) -> bool:
        response = await reporting.client.get(f"/timelines/cases/{case}")
        return response.status_code == 200 and len(response.json()["entries"]) == count

    def in_case(items: list[Published]) -> int:
        """The case's timeline holds every story event but the two on the person's own stream."""
        return len([p for p in items if not p.envelope.streamid.startswith("person-")])

    await eventually(lambda: story_caught_up(in_case(first_story)), timeout=60, what="first half of the case")
    live = await reporting.get(f"/timelines/cases/{case}")
    moment = live["entries"][-1]["recorded_at"]

    forged_target = next(
        p for p in scenario.writer.out if p.envelope.streamid == case and p.envelope.streamversion == 2
    )
    forged = Published(forged_target.topic, forged_copy(forged_target.envelope, {"kind": "home_visit"}))
    await publish(kafka_bootstrap, suffixed([*later_story, forged], suffix))
    await eventually(lambda: story_caught_up(in_case(story)), timeout=60, what="the whole case")
    replayed = await reporting.get(f"/timelines/cases/{case}", as_of=moment)
    assert replayed["entries"] == live["entries"]
    assert replayed["state"] == live["state"]

    # The forged copy is found and located on its topic.
    verified = await reporting.client.post("/audit/chains/verify", json={})
    assert verified.status_code == 200, verified.text
    report = verified.json()
    assert not report["intact"]
    assert [(b["stream_id"], b["version"], b["topic"]) for b in report["breaks"]] == [(case, 2, forged.topic + suffix)]
    assert report["streams"] == len({p.envelope.streamid for p in scenario.writer.out})

    # A full rebuild equals the live projections, and reads answer throughout.
    before_tables = await reporting.get("/reports/consultations", fiscal_years=[2016, 2021], by="district")
    before_case = await reporting.get(f"/timelines/cases/{case}")
    for name in ("reporting.annual", "reporting.timelines"):
        started = await reporting.client.post(f"/projections/{name}/rebuild")
        assert started.status_code == 202, started.text
        reads_during = 0

        async def rebuilt(projection: str = name) -> bool:
            nonlocal reads_during
            during = await reporting.get("/reports/consultations", fiscal_years=[2016, 2021], by="district")
            assert during == before_tables
            reads_during += 1
            progress = await reporting.get(f"/projections/{projection}/rebuild")
            assert progress["state"] != "failed", progress
            return bool(progress["state"] == "done")

        await eventually(rebuilt, timeout=120, what=f"rebuild of {name}")
        done = await reporting.get(f"/projections/{name}/rebuild")
        assert done["events_done"] > 0
        assert done["generation"] == 2
        assert reads_during >= 1
    projections = {p["projection"]: p["active_generation"] for p in await reporting.get("/projections")}
    assert projections == {"reporting.annual": 2, "reporting.timelines": 2}
    assert await reporting.get("/reports/consultations", fiscal_years=[2016, 2021], by="district") == before_tables
    after_case = await reporting.get(f"/timelines/cases/{case}")

    def without_received(body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "entries": [{**e, "received_at": None} for e in body["entries"]]}

    assert without_received(after_case) == without_received(before_case)
