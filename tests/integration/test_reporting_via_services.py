"""Reporting fed only through the other services' public interfaces, on SQLite and PostgreSQL.

Two fiscal years of activity (the first opening in October, so partial) are written by a small
driver from the scenario generator's `YearPlan`s: consultations over intake's HTTP API and as
agency reports on the inbound topic `tsunagu.intake.inbound` (binary CloudEvents, one sent twice),
some entered with the wrong categories and corrected (re-classified) afterwards; visits, resources
identified, usable places and their uses, newsletter issues, subscribers and groups introduced
over resources' HTTP API. The real intake, resources and reporting processes run on the real
broker, and every table of the seed must match the totals computed from the plans, to the digit:
consultations by window type (with 内、相談拡充) for both years side by side, resource development
with the previous year in parentheses, and publicity with subscribers as they stood at each
year's end.

The services publish on the shared `tsunagu.*.events` topics, which other tests of the session
also write, so each variant uses fiscal years nobody else writes (SQLite: FY2010-FY2011;
PostgreSQL: FY2006-FY2007) and districts of its own, and asserts on those years only. Subscribers
are a level summed over every change up to a year's end, whatever its year, so each variant's mail
magazines close down in the April after its second year (everyone unsubscribes): the years' figures
stay as they were, and a later variant's level is not lifted by this one's subscribers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from tsunagu_events import EventEnvelope, to_kafka
from tsunagu_events.contracts.common import JST
from tsunagu_events.contracts.resources import VisitCategory
from tsunagu_events.topics import INTAKE_INBOUND
from tsunagu_platform.auth import Role, mint
from tsunagu_platform.tansu import free_port
from tsunagu_platform.testing import create_postgres_database, drop_postgres_database
from tsunagu_reporting.scenario.generator import GROUP_WINDOW, YearPlan

from .processes import Process, eventually

pytestmark = pytest.mark.integration

KEY = "reporting-via-services-signing-key-0123456789"
TOKEN = mint(KEY, tenant="131121", agency="setagaya.branch_office", role=Role.ADMIN, staff="it-admin")
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
SERVICES = ("intake", "resources", "reporting")

FIRST = YearPlan(
    fiscal_year=2010,
    first_month=10,
    community_center=7,
    comprehensive_support_center=9,
    expanded=4,
    corrected_after_year=1,
    welfare_council=3,
    visits={"salon_mini_day": 5, "school_facility_nursery": 3, "business_npo": 2},
    resources_identified=4,
    usable_places=2,
    place_uses=3,
    newsletter_issues=3,
    subscribers_added=40,
    groups_introduced=2,
)
SECOND = YearPlan(
    fiscal_year=2011,
    community_center=11,
    comprehensive_support_center=13,
    expanded=6,
    corrected_after_year=2,
    welfare_council=5,
    visits={"salon_mini_day": 6, "school_facility_nursery": 4, "business_npo": 3},
    resources_identified=5,
    usable_places=3,
    place_uses=6,
    newsletter_issues=6,
    subscribers_added=25,
    groups_introduced=4,
)
EARLIER = 4
"""The PostgreSQL variant's years are the SQLite variant's, four years earlier."""

LABELS_JA = {2006: "平成18年度", 2007: "平成19年度", 2010: "平成22年度", 2011: "平成23年度"}
CSC = "comprehensive_support_center"
DISTRICTS = {
    "sqlite": ("ikejiri", "kitazawa", "okusawa", "seijo", "karasuyama", "taishido", "yoga"),
    "postgresql": ("wakabayashi", "daizawa", "todoroki", "kinuta", "kamisoshigaya", "shimouma", "fukasawa"),
}
"""Districts in all five areas, taken round-robin; each variant its own, as a district's publicity is one
stream (`publicity-<district>`) numbered from 1 in each resources database, and reporting takes a
stream's version once: a second database's `publicity-ikejiri` v1 on the shared topic is a replay to it."""


def plans_for(variant: str) -> tuple[YearPlan, YearPlan]:
    if variant == "sqlite":
        return FIRST, SECOND
    return (
        dataclasses.replace(FIRST, fiscal_year=FIRST.fiscal_year - EARLIER),
        dataclasses.replace(SECOND, fiscal_year=SECOND.fiscal_year - EARLIER),
    )


# ---- the driver: a plan's year written through the services' public interfaces ----------------


def months_of(plan: YearPlan) -> list[date]:
    first = date(plan.fiscal_year if plan.first_month >= 4 else plan.fiscal_year + 1, plan.first_month, 1)
    months = []
    while first <= date(plan.fiscal_year + 1, 3, 1):
        months.append(first)
        first = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return months


def day_in(plan: YearPlan, index: int, count: int) -> date:
    """The index-th of count things, spread evenly over the months the year covers (the first on its 1st)."""
    month = months_of(plan)[index * len(months_of(plan)) // max(count, 1)]
    return date(month.year, month.month, 1 + index % 27)


def ok(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


@dataclass
class Driver:
    intake: httpx.AsyncClient
    resources: httpx.AsyncClient
    bootstrap: str
    districts: Sequence[str]
    source: str = field(default_factory=lambda: f"/it-{uuid.uuid4().hex[:8]}")
    reports: list[EventEnvelope] = field(default_factory=list)
    corrections: list[tuple[str, list[str]]] = field(default_factory=list)
    places: list[tuple[str, date]] = field(default_factory=list)
    subscribers: Counter[str] = field(default_factory=Counter)
    http_consultations: int = 0

    def place(self, n: int) -> str:
        return self.districts[n % len(self.districts)]

    async def year(self, plan: YearPlan) -> None:
        await self.consultations(plan)
        await self.resource_development(plan)
        await self.publicity(plan)

    async def consultations(self, plan: YearPlan) -> None:
        """Every other one over HTTP, the rest as agency reports. At a comprehensive support center a
        topic outside elderly care makes it 相談拡充 (disability, or child rearing beside elderly care);
        the first `corrected_after_year` of the expanded ones are entered as elderly care only and
        corrected to disability, and the first one not expanded is entered as disability and corrected
        back to elderly care. The other windows' topics never make one expanded."""
        n = 0
        for group, window_type in GROUP_WINDOW.items():
            count = getattr(plan, group)
            for i in range(count):
                district = self.place(n)
                n += 1
                day = day_in(plan, i, count)
                expanded = group == CSC and i < plan.expanded
                corrected = expanded and i < plan.corrected_after_year
                wrongly_expanded = group == CSC and i == plan.expanded
                if group != CSC:
                    categories = ["poverty"] if group == "community_center" else ["isolation"]
                elif expanded and not corrected:
                    categories = ["disability"] if i % 2 else ["elderly_care", "child_rearing"]
                elif wrongly_expanded:
                    categories = ["disability"]
                else:
                    categories = ["elderly_care"]
                report = {
                    "window_id": f"{district}.{window_type}",
                    "received_at": datetime.combine(day, time(10, i % 60), tzinfo=JST).isoformat(),
                    "channel": "walk_in",
                    "consulted_by": "person",
                    "categories": categories,
                    "outcome": "information_given",
                }
                if corrected or wrongly_expanded or n % 2 == 0:
                    written = ok(await self.intake.post("/consultations", json=report))
                    self.http_consultations += 1
                    assert written["expanded"] == ((expanded and not corrected) or wrongly_expanded)
                    if corrected:
                        self.corrections.append((written["id"], ["disability"]))
                    elif wrongly_expanded:
                        self.corrections.append((written["id"], ["elderly_care"]))
                else:
                    self.reports.append(self.reported(report, day))

    def reported(self, data: dict[str, Any], day: date) -> EventEnvelope:
        """An agency's report with only the attributes the AsyncAPI document requires."""
        return EventEnvelope.model_validate(
            {
                "id": str(uuid.uuid4()),
                "source": f"/agency/{data['window_id']}{self.source}",  # the window's own system
                "type": "tsunagu.agency.ConsultationReported",
                "time": datetime.combine(day, time(12), tzinfo=JST).astimezone(UTC),
                "tenant": "131121",
                "data": data,
            }
        )

    async def send_reports(self) -> None:
        """On the inbound topic in binary mode; the first one twice, as an agency resending after a timeout."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            for envelope in [*self.reports, *self.reports[:1]]:
                key, headers, value = to_kafka(envelope)
                await producer.send_and_wait(INTAKE_INBOUND, value, key=key, headers=headers)
        finally:
            await producer.stop()

    async def correct(self) -> None:
        for consultation_id, categories in self.corrections:
            ok(
                await self.intake.post(
                    f"/consultations/{consultation_id}/reclassification", json={"categories": categories}
                ),
                200,
            )

    async def resource(self, n: int, day: date) -> str:
        body = {
            "district_id": self.place(n),
            "kind": "salon",
            "organization_name": f"サロン{n}",
            "service_name": "ふれあいサロン",
            "effective_on": day.isoformat(),
        }
        return str(ok(await self.resources.post("/resources", json=body))["resource_id"])

    async def resource_development(self, plan: YearPlan) -> None:
        visits = []
        n = 0
        for category in VisitCategory:
            count = plan.visits.get(category.value, 0)
            for i in range(count):
                day = day_in(plan, i, count)
                visits.append({"district_id": self.place(n), "category": category.value, "visited_on": str(day)})
                n += 1
        if visits:
            assert len(ok(await self.resources.post("/visits/batch", json={"visits": visits}))) == len(visits)
        for i in range(plan.resources_identified):
            day = day_in(plan, i, plan.resources_identified)
            resource_id = await self.resource(i, day)
            path = f"/resources/{resource_id}/identifications"
            ok(await self.resources.post(path, json={"identified_on": day.isoformat()}), 200)
        for i in range(plan.usable_places):
            day = day_in(plan, i, plan.usable_places)
            resource_id = await self.resource(i, day)
            body = {"resource_id": resource_id, "kind": "room", "offered_on": day.isoformat()}
            self.places.append((str(ok(await self.resources.post("/places", json=body))["place_id"]), day))
        for i in range(plan.place_uses):
            # Uses of places offered this year or in an earlier one.
            day = day_in(plan, i, plan.place_uses)
            open_places = [place for place, offered in self.places if offered <= day]
            assert open_places, "the plan uses a place before any was offered"
            use = {"activity": "サロン", "used_on": day.isoformat(), "participants": 5}
            ok(await self.resources.post(f"/places/{open_places[i % len(open_places)]}/uses", json=use))

    async def publicity(self, plan: YearPlan) -> None:
        for i in range(plan.newsletter_issues):
            day = day_in(plan, i, plan.newsletter_issues)
            path = f"/districts/{self.place(i)}/newsletter-issues"
            ok(await self.resources.post(path, json={"sent_on": day.isoformat()}))
        for i in range(plan.groups_introduced):
            day = day_in(plan, i, plan.groups_introduced)
            body = {"group_name": f"町会{i}", "introduced_on": day.isoformat()}
            ok(await self.resources.post(f"/districts/{self.place(i)}/groups", json=body))
        # The year's new subscribers, shared among a few districts; in the first, one more joins and leaves.
        subscriber_districts = self.districts[:3]
        share, rest = divmod(plan.subscribers_added, len(subscriber_districts))
        for k, district in enumerate(subscriber_districts):
            deltas = [share + (k < rest)]
            if k == 0:
                deltas = [deltas[0] + 1, -1]
            for j, delta in enumerate(d for d in deltas if d):
                await self.change_subscribers(district, delta, day_in(plan, j, len(deltas)))

    async def change_subscribers(self, district: str, delta: int, day: date) -> None:
        body = {"delta": delta, "on": day.isoformat()}
        published = ok(await self.resources.post(f"/districts/{district}/subscribers", json=body), 200)
        self.subscribers[district] += delta
        assert published["subscribers"] == self.subscribers[district]

    async def close_mail_magazines(self, after: YearPlan) -> None:
        """Everyone unsubscribes in the April after the last year."""
        day = date(after.fiscal_year + 1, 4, 15)
        for district, count in list(self.subscribers.items()):
            if count:
                await self.change_subscribers(district, -count, day)


# ---- what the tables must show, from the plans ---------------------------------------------


def consultations_expected(plans: Sequence[YearPlan]) -> dict[str, dict[str, int]]:
    return {
        "community_center": {str(p.fiscal_year): p.community_center for p in plans},
        "comprehensive_support_center": {str(p.fiscal_year): p.comprehensive_support_center for p in plans},
        "expanded_consultation": {str(p.fiscal_year): p.expanded for p in plans},
        "welfare_council": {str(p.fiscal_year): p.welfare_council for p in plans},
    }


def resources_expected(plan: YearPlan, previous: YearPlan | None) -> dict[str, str]:
    """The seed's spelling: this year (the previous year)."""
    nothing = YearPlan(
        fiscal_year=plan.fiscal_year - 1,
        community_center=0,
        comprehensive_support_center=0,
        expanded=0,
        welfare_council=0,
    )
    before = previous or nothing

    def visits(p: YearPlan, category: str) -> int:
        return p.visits.get(category, 0)

    rows = {f"visits.{c.value}": (visits(plan, c.value), visits(before, c.value)) for c in VisitCategory}
    rows["visits.total"] = (sum(plan.visits.values()), sum(before.visits.values()))
    rows["resources_identified"] = (plan.resources_identified, before.resources_identified)
    rows["usable_places"] = (plan.usable_places, before.usable_places)
    rows["place_uses"] = (plan.place_uses, before.place_uses)
    return {item: f"{now:,} ({then:,})" for item, (now, then) in rows.items()}


def publicity_expected(plans: Sequence[YearPlan], index: int) -> dict[str, dict[str, int]]:
    """Issues and groups of the year; subscribers as they stood at its end (every earlier year's too)."""
    plan = plans[index]
    year = str(plan.fiscal_year)
    return {
        "newsletter_issues": {year: plan.newsletter_issues},
        "subscribers": {year: sum(p.subscribers_added for p in plans[: index + 1])},
        "groups_introduced": {year: plan.groups_introduced},
    }


# ---- the services --------------------------------------------------------------------------


@dataclass
class Stack:
    variant: str
    clients: dict[str, httpx.AsyncClient]
    processes: dict[str, Process]

    async def table(self, path: str, **params: Any) -> dict[str, Any]:
        return ok(await self.clients["reporting"].get(path, params=params), 200)


async def ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health/ready")).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[Stack]:
    """Intake, resources and reporting as real processes, each with its own database of the variant's kind."""
    variant = str(request.param)
    urls: dict[str, str] = {}
    processes: dict[str, Process] = {}
    clients: dict[str, httpx.AsyncClient] = {}
    try:
        for name in SERVICES:
            folder = tmp_path / name
            folder.mkdir()
            urls[name] = (
                await create_postgres_database() if variant == "postgresql" else f"sqlite:///{folder / f'{name}.db'}"
            )
            port = free_port()
            env = {
                "PORT": str(port),
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "DATABASE_URL": urls[name],
                "TSUNAGU_VAR_DIR": str(folder),
                "TSUNAGU_TOKEN_SIGNING_KEY": KEY,
                "LOG_LEVEL": "WARNING",
            }
            processes[name] = Process([sys.executable, "-m", f"tsunagu_{name}", "serve"], tmp_path, name, env=env)
            clients[name] = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=HEADERS, timeout=30)
        for process in processes.values():
            process.start()

        async def started(name: str) -> None:
            try:
                await eventually(lambda: ready(clients[name]), timeout=60, what=f"{name} ready")
            except AssertionError as error:
                raise AssertionError(f"{error}\n{processes[name].output()[-2000:]}") from None

        await asyncio.gather(*(started(name) for name in SERVICES))
        yield Stack(variant, clients, processes)
    finally:
        for client in clients.values():
            await client.aclose()
        for process in processes.values():
            process.stop()
        if variant == "postgresql":
            for url in urls.values():
                await drop_postgres_database(url)


def ward(body: dict[str, Any], key: str = "values") -> dict[str, Any]:
    return {r["item"]: r[key] for r in body["rows"] if r["group_id"] == "ward"}


async def test_every_seed_table_matches_a_plan_entered_over_http_and_the_inbound_topic(
    stack: Stack, kafka_bootstrap: str
) -> None:
    plans = plans_for(stack.variant)
    first, second = plans
    driver = Driver(stack.clients["intake"], stack.clients["resources"], kafka_bootstrap, DISTRICTS[stack.variant])
    for plan in plans:
        await driver.year(plan)
    await driver.close_mail_magazines(second)
    await driver.send_reports()
    await driver.correct()
    assert driver.reports, "some consultations come from the inbound topic"
    assert driver.http_consultations > len(driver.corrections), "some come over HTTP, uncorrected"

    years = [p.fiscal_year for p in plans]
    want = {
        "consultations": consultations_expected(plans),
        "resources": [resources_expected(first, None), resources_expected(second, first)],
        "publicity": [publicity_expected(plans, 0), publicity_expected(plans, 1)],
    }
    seen: dict[str, Any] = {}

    async def tables() -> dict[str, Any]:
        return {
            "consultations": ward(await stack.table("/reports/consultations", fiscal_years=years)),
            "resources": [
                {
                    item: display[str(y)]
                    for item, display in ward(
                        await stack.table("/reports/resource-development", fiscal_year=y), "display"
                    ).items()
                }
                for y in years
            ],
            "publicity": [ward(await stack.table("/reports/publicity", fiscal_year=y)) for y in years],
        }

    async def caught_up() -> bool:
        nonlocal seen
        seen = await tables()
        return seen == want

    try:
        await eventually(caught_up, timeout=60, what="the tables to match the plans")
    except AssertionError:
        assert seen == want  # shows the difference
        raise

    body = await stack.table("/reports/consultations", fiscal_years=years)
    columns = {y["fiscal_year"]: y for y in body["fiscal_years"]}
    label = LABELS_JA[first.fiscal_year]
    assert columns[first.fiscal_year]["label_ja"] == label
    assert columns[first.fiscal_year]["partial"]
    assert columns[first.fiscal_year]["note_ja"] == f"{label}は10月からの6か月分"
    assert columns[second.fiscal_year]["label_ja"] == LABELS_JA[second.fiscal_year]
    assert not columns[second.fiscal_year]["partial"]
    resources = await stack.table("/reports/resource-development", fiscal_year=second.fiscal_year)
    assert resources["notes_ja"][0] == f"（　）内は{label}の実績"
