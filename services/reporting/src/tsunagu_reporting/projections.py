"""The reporting projections: counted facts for the annual tables and indicators, and the
companion-support timelines. Both are rebuilt from the three services' topics into new
generation tables while the live ones keep answering (tsunagu_platform.projection).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events.contracts.common import fiscal_year_of
from tsunagu_events.envelope import format_time
from tsunagu_events.reference import Ward, ward_for
from tsunagu_events.topics import events_topic
from tsunagu_platform.consumer import ReceivedEvent
from tsunagu_platform.projection import Tables
from tsunagu_platform.serving import SERVING_TYPES, ServingEvent, ServingTables, apply_serving, serving_tables
from tsunagu_platform.sql import BulkInsert, insert_ignoring_duplicates

from tsunagu_reporting.domain.facts import (
    CONSULTATION_RECEIVED,
    CONSULTATION_RECLASSIFIED,
    GAP_NEED_MARKED,
    ConsultationState,
    Fact,
    FactKey,
    consultation_facts,
    consultation_state,
    correction_facts,
    day_of,
    fact_key,
    referral_facts,
    simple_facts,
)
from tsunagu_reporting.domain.timeline import (
    agency_of,
    grants_of,
    persons_in,
    redact,
    service_of,
    short_type,
    without_meeting_text,
)
from tsunagu_reporting.queries import end_of_day_utc

SOURCE_TOPICS: tuple[str, ...] = (events_topic("intake"), events_topic("referral"), events_topic("resources"))


def source_topics(suffix: str = "") -> tuple[str, ...]:
    return tuple(topic + suffix for topic in SOURCE_TOPICS)


DEFAULT_TENANT = "131121"


def received_now() -> str:
    return format_time(datetime.now(UTC))


class WardPlaces:
    """Area and district of ids, from the tenant's reference data (not code constants)."""

    def __init__(self, ward: Ward) -> None:
        self.ward = ward
        self._district_area = {d.id: d.area for d in ward.districts}
        self._windows: dict[str, list[str]] = {}
        for agency in ward.agencies():
            if agency.kind == "window" and agency.district:
                self._windows.setdefault(agency.district, []).append(agency.id)
        self._groups = {t.id: t.report_group for t in ward.window_types}

    def area_of(self, district: str) -> str:
        return self._district_area.get(district, "")

    def place_of_agency(self, agency_id: str) -> tuple[str, str]:
        agency = self.ward.agency(agency_id)
        if agency is None:
            return "", ""
        return agency.district or "", agency.area or ""

    def windows_of(self, district: str | None) -> list[str]:
        return list(self._windows.get(district or "", []))

    def report_group(self, window_type: str) -> str:
        return self._groups.get(window_type, window_type)


class AnnualFacts:
    """Counted facts stamped with recording time: the source of every table and indicator."""

    name = "reporting.annual"
    topics: Sequence[str] = SOURCE_TOPICS

    def __init__(self, tenant: str = DEFAULT_TENANT, topic_suffix: str = "") -> None:
        self.places = WardPlaces(ward_for(tenant))
        self.topics = source_topics(topic_suffix)
        self._day_stamps: dict[int, str] = {}

    def define(self, metadata: MetaData, generation: int) -> Tables:
        g = generation
        facts = Table(
            # One row per `fact_key` and recording day per batch: the sum of the facts it stands for.
            f"rep_facts_g{g}",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("fiscal_year", Integer, nullable=False),
            Column("metric", String(48), nullable=False),
            Column("dimension", String(64), nullable=False),
            Column("district_id", String(64), nullable=False),
            Column("area_id", String(64), nullable=False),
            Column("value", Integer, nullable=False),
            # The day it occurred on (`DATED_METRICS`), else the earliest day of the facts summed.
            Column("occurred_on", String(10), nullable=False),
            # The end of the Japan-time day it was recorded on (queries.end_of_day_utc), not the instant:
            # every as-of question is asked "as it stood at the end of a day".
            Column("recorded_at", String(32), nullable=False),
            # Only for `DISTINCT_METRICS`.
            Column("subject", String(128)),
            Index(f"ix_rep_facts_g{g}_year", "fiscal_year", "metric"),
        )
        consultations = Table(
            f"rep_consultations_g{g}",
            metadata,
            Column("consultation_id", String(128), primary_key=True),
            Column("fiscal_year", Integer, nullable=False),
            Column("report_group", String(64), nullable=False),
            Column("district_id", String(64), nullable=False),
            Column("area_id", String(64), nullable=False),
            Column("occurred_on", String(10), nullable=False),
            Column("expanded", Boolean, nullable=False),
            Column("compound_need", Boolean, nullable=False),
            Column("gap_need", Boolean, nullable=False),
            sqlite_with_rowid=False,  # looked up by its key only: one b-tree instead of table + index
        )
        referrals = Table(
            f"rep_referrals_g{g}",
            metadata,
            Column("referral_id", String(128), primary_key=True),
            Column("from_agency_id", String(64), nullable=False),
            Column("to_agency_id", String(64), nullable=False),
            Column("district_id", String(64), nullable=False),
            Column("area_id", String(64), nullable=False),
            Column("fiscal_year", Integer, nullable=False),
            Column("requested_at", String(32), nullable=False),
            Column("due_on", String(10), nullable=False),
            Column("accepted_at", String(32)),
            Column("completed_at", String(32)),
            Column("closed", String(16)),
            Column("overdue", Boolean, nullable=False, default=False),
        )
        return {"facts": facts, "consultations": consultations, "referrals": referrals}

    async def apply(self, conn: AsyncConnection, tables: Tables, event: ReceivedEvent) -> None:
        await self.apply_batch(conn, tables, [event])

    async def apply_batch(self, conn: AsyncConnection, tables: Tables, events: Sequence[ReceivedEvent]) -> None:
        """Sum the batch's facts by `fact_key` and recording day, write one row per sum; buffer the
        new consultations and write them in bulk (corrections first flush what they read)."""
        sums: dict[tuple[FactKey, str], list[Any]] = {}
        states: list[ConsultationState] = []
        consultations = _bulk(tables["consultations"], CONSULTATION_COLUMNS, on_conflict="ignore")
        report_group = self.places.report_group
        recorded_day = self._recorded_day

        async def flush_states() -> None:
            await consultations.run(conn, states)
            states.clear()

        for event in events:
            envelope = event.envelope
            data = envelope.data
            kind = envelope.type
            facts: list[Fact]
            if kind == CONSULTATION_RECEIVED:
                state = consultation_state(data, report_group(str(data["window_type"])))
                states.append(state)
                facts = consultation_facts(state)
            elif kind in (CONSULTATION_RECLASSIFIED, GAP_NEED_MARKED):
                await flush_states()
                facts = await self._correct(conn, tables, kind, data)
            elif kind.startswith("tsunagu.resources."):
                facts = simple_facts(kind, data, self.places.area_of)
            else:
                facts = referral_facts(kind, data, self.places.place_of_agency)
                facts += await self._track_referral(conn, tables, kind, data)
            if not facts:
                continue
            recorded = recorded_day(envelope.time)
            for fact in facts:
                key = (fact_key(fact), recorded)
                found = sums.get(key)
                if found is None:
                    sums[key] = [fact.value, fact.occurred_on]
                else:
                    found[0] += fact.value
                    if fact.occurred_on < found[1]:
                        found[1] = fact.occurred_on
        await flush_states()
        rows = [
            (year, metric, dimension, district, area, value, occurred, recorded, subject)
            for ((year, metric, dimension, district, area, _, subject), recorded), (value, occurred) in sums.items()
        ]
        await _bulk(tables["facts"], FACT_COLUMNS).run(conn, rows)

    def _recorded_day(self, moment: datetime) -> str:
        """The stamp of the Japan-time day this instant falls on (its last instant, as queries ask),
        looked up by the hour (Japan's offset is whole hours)."""
        hour = int(moment.timestamp()) // 3600
        found = self._day_stamps.get(hour)
        if found is None:
            if len(self._day_stamps) >= 100_000:
                self._day_stamps.clear()
            self._day_stamps[hour] = found = end_of_day_utc(day_of(moment))
        return found

    async def _correct(self, conn: AsyncConnection, tables: Tables, kind: str, data: dict[str, Any]) -> list[Fact]:
        table = tables["consultations"]
        row = (
            (await conn.execute(select(table).where(table.c.consultation_id == data["consultation_id"])))
            .mappings()
            .first()
        )
        if row is None:
            return []
        before = ConsultationState(**dict(row))
        if kind == CONSULTATION_RECLASSIFIED:
            after = before._replace(expanded=bool(data["expanded"]), compound_need=bool(data["compound_need"]))
        else:
            after = before._replace(gap_need=bool(data.get("marked", True)))
        await conn.execute(
            update(table)
            .where(table.c.consultation_id == before.consultation_id)
            .values(expanded=after.expanded, compound_need=after.compound_need, gap_need=after.gap_need)
        )
        return correction_facts(before, after)

    async def _track_referral(
        self, conn: AsyncConnection, tables: Tables, kind: str, data: dict[str, Any]
    ) -> list[Fact]:
        """Keep each referral's times for turnaround; completion is placed where it was requested."""
        table = tables["referrals"]
        name = short_type(kind)
        if name == "ReferralRequested":
            district, area = self.places.place_of_agency(str(data["from_agency_id"]))
            requested = _instant(data["requested_at"])
            await insert_ignoring_duplicates(
                conn,
                table,
                [
                    {
                        "referral_id": data["referral_id"],
                        "from_agency_id": data["from_agency_id"],
                        "to_agency_id": data["to_agency_id"],
                        "district_id": district,
                        "area_id": area,
                        "fiscal_year": referral_facts(kind, data, self.places.place_of_agency)[0].fiscal_year,
                        "requested_at": requested,
                        "due_on": str(data["due_on"]),
                        "overdue": False,
                    }
                ],
            )
            return []
        changes: dict[str, Any] = {}
        if name == "ReferralAccepted":
            changes = {"accepted_at": _instant(data["accepted_at"])}
        elif name == "ReferralCompleted":
            changes = {"completed_at": _instant(data["completed_at"]), "closed": "completed"}
        elif name == "ReferralDeclined":
            changes = {"closed": "declined"}
        elif name == "ReferralWithdrawn":
            changes = {"closed": "withdrawn"}
        elif name == "ReferralOverdue":
            changes = {"overdue": True}
        if changes:
            await conn.execute(update(table).where(table.c.referral_id == data["referral_id"]).values(**changes))
            if name == "ReferralCompleted":
                row = (
                    await conn.execute(
                        select(table.c.district_id, table.c.area_id).where(table.c.referral_id == data["referral_id"])
                    )
                ).first()
                if row is not None:
                    day = day_of(data["completed_at"])
                    outcome = str(data.get("outcome") or "")
                    return [
                        Fact(
                            fiscal_year_of(day),
                            "referral_completed",
                            outcome,
                            row[0],
                            row[1],
                            1,
                            day.isoformat(),
                            str(data["referral_id"]),
                        )
                    ]
        return []


def _instant(value: Any) -> str:
    if isinstance(value, datetime):
        return format_time(value)
    return format_time(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


FACT_COLUMNS = (
    "fiscal_year",
    "metric",
    "dimension",
    "district_id",
    "area_id",
    "value",
    "occurred_on",
    "recorded_at",
    "subject",
)
CONSULTATION_COLUMNS = (
    "consultation_id",
    "fiscal_year",
    "report_group",
    "district_id",
    "area_id",
    "occurred_on",
    "expanded",
    "compound_need",
    "gap_need",
)

_BULK: dict[tuple[str, tuple[str, ...], str], BulkInsert] = {}


def _bulk(
    table: Table,
    columns: Sequence[str],
    *,
    on_conflict: Literal["fail", "ignore", "update"] = "fail",
    keys: Sequence[str] = (),
    update: Sequence[str] = (),
) -> BulkInsert:
    """The prebuilt insert of these columns into this generation's table."""
    key = (table.name, tuple(columns), f"{on_conflict}:{','.join(keys)}:{','.join(update)}")
    found = _BULK.get(key)
    if found is None:
        _BULK[key] = found = BulkInsert(table, columns, on_conflict=on_conflict, keys=keys, update=update)
    return found


LINK_FIELDS = ("case_id", "consultation_id", "referral_id", "participation_id")


class Timelines:
    """Every event about a person or case, in time order, with agency and actor; sealed fields
    replaced by a protected marker. Also who may read whose timeline (grants)."""

    name = "reporting.timelines"
    topics: Sequence[str] = SOURCE_TOPICS

    def __init__(self, tenant: str = DEFAULT_TENANT, topic_suffix: str = "") -> None:
        self.places = WardPlaces(ward_for(tenant))
        self.topics = source_topics(topic_suffix)
        self.tenant = tenant

    def define(self, metadata: MetaData, generation: int) -> Tables:
        g = generation
        serving = serving_tables(metadata, f"rep_serving_g{g}")
        entries = Table(
            f"rep_timeline_g{g}",
            metadata,
            Column("seq", Integer, primary_key=True, autoincrement=True),
            Column("event_id", String(128), nullable=False),
            Column("event_type", String(128), nullable=False),
            Column("stream_id", String(128), nullable=False),
            Column("stream_version", Integer, nullable=False),
            Column("person_id", String(128)),
            Column("case_id", String(128)),
            Column("recorded_at", String(32), nullable=False),
            Column("received_at", String(32), nullable=False),
            Column("agency_id", String(64)),
            Column("actor_staff", String(64)),
            Column("data", Text, nullable=False),
            Index(f"ix_rep_timeline_g{g}_person", "person_id", "recorded_at"),
            Index(f"ix_rep_timeline_g{g}_case", "case_id", "recorded_at"),
        )
        links = Table(
            f"rep_links_g{g}",
            metadata,
            Column("key", String(160), primary_key=True),
            Column("person_id", String(128)),
            Column("case_id", String(128)),
        )
        grants = Table(
            f"rep_grants_g{g}",
            metadata,
            Column("person_id", String(128), primary_key=True),
            Column("agency_id", String(64), primary_key=True),
            Column("basis", String(32), primary_key=True),
            Column("reference", String(128), primary_key=True),
            Column("granted_at", String(32), nullable=False),
            Column("revoked_at", String(32)),
        )
        return {
            "entries": entries,
            "links": links,
            "grants": grants,
            "serving_registrations": serving.registrations,
            "serving_cases": serving.cases,
        }

    async def apply(self, conn: AsyncConnection, tables: Tables, event: ReceivedEvent) -> None:
        await self.apply_batch(conn, tables, [event])

    async def apply_batch(self, conn: AsyncConnection, tables: Tables, events: Sequence[ReceivedEvent]) -> None:
        """Look up every link of the batch at once, keep them in memory, write entries in bulk."""
        await apply_serving(
            conn,
            serving_of(tables),
            [
                ServingEvent(e.envelope.type, e.envelope.data, e.envelope.actoragency)
                for e in events
                if e.envelope.type in SERVING_TYPES and e.envelope.tenant == self.tenant
            ],
        )
        keys_of: list[list[str]] = []
        wanted: set[str] = set()
        for e in events:
            data = e.envelope.data
            keys = [f"{name}:{data[name]}" for name in LINK_FIELDS if isinstance(data.get(name), str)]
            keys_of.append(keys)
            wanted.update(keys)
        known = await _links_of(conn, tables["links"], wanted)
        new_links: dict[str, tuple[str, str | None, str | None]] = {}
        entries: list[tuple[Any, ...]] = []
        grants: list[tuple[Any, ...]] = []
        received = received_now()
        grants_insert = _bulk(tables["grants"], GRANT_COLUMNS, on_conflict="ignore")

        async def flush_grants() -> None:
            await grants_insert.run(conn, grants)
            grants.clear()

        for event, keys in zip(events, keys_of, strict=True):
            envelope = event.envelope
            data = envelope.data
            persons = persons_in(data)
            case_id = data.get("case_id") if isinstance(data.get("case_id"), str) else None
            for key in keys:
                linked_person, linked_case = known.get(key, (None, None))
                if not persons and linked_person:
                    persons = [linked_person]
                if case_id is None and linked_case:
                    case_id = linked_case
            if not persons and case_id is None:
                continue
            person = persons[0] if persons else None
            for key in keys:
                known[key] = (person, case_id)
                new_links[key] = (key, person, case_id)
            recorded = format_time(envelope.time)
            text_free = without_meeting_text(envelope.type, data)
            body = json.dumps(redact(text_free, service_of(envelope.type)), ensure_ascii=False, sort_keys=True)
            agency = agency_of(data, envelope.actoragency)
            targets: list[str | None] = [*persons] or [None]
            entries += [
                (
                    envelope.id,
                    envelope.type,
                    envelope.streamid,
                    envelope.streamversion,
                    p,
                    case_id,
                    recorded,
                    received,
                    agency,
                    envelope.actorstaff,
                    body,
                )
                for p in targets
            ]
            if short_type(envelope.type) == "ConsentWithdrawn":
                await flush_grants()
                table = tables["grants"]
                await conn.execute(
                    update(table)
                    .where(table.c.reference == data["consent_id"], table.c.basis == "consent")
                    .values(revoked_at=recorded)
                )
            else:
                grants += self._grants(envelope.type, data, persons, recorded)
        links = _bulk(
            tables["links"], LINK_COLUMNS, on_conflict="update", keys=["key"], update=["person_id", "case_id"]
        )
        await links.run(conn, list(new_links.values()))
        await _bulk(tables["entries"], ENTRY_COLUMNS).run(conn, entries)
        await flush_grants()

    def _grants(self, kind: str, data: dict[str, Any], persons: list[str], at: str) -> list[tuple[Any, ...]]:
        consent = short_type(kind) == "ConsentGiven"
        windows = self.places.windows_of(data.get("district_id")) if consent else []
        return [(p, g.agency_id, g.basis, g.reference, at) for p in persons for g in grants_of(kind, data, windows)]


def serving_of(tables: Tables) -> ServingTables:
    """Who serves each person, as this generation of the timelines learnt it (see tsunagu_platform.serving)."""
    return ServingTables(tables["serving_registrations"], tables["serving_cases"])


ENTRY_COLUMNS = (
    "event_id",
    "event_type",
    "stream_id",
    "stream_version",
    "person_id",
    "case_id",
    "recorded_at",
    "received_at",
    "agency_id",
    "actor_staff",
    "data",
)
LINK_COLUMNS = ("key", "person_id", "case_id")
GRANT_COLUMNS = ("person_id", "agency_id", "basis", "reference", "granted_at")


async def _links_of(conn: AsyncConnection, links: Table, keys: set[str]) -> dict[str, tuple[str | None, str | None]]:
    """The stored (person, case) of each of these link keys that has one.

    On SQLite the keys travel as one JSON array parameter (json_each): an IN list of thousands
    of bound values costs SQLAlchemy more to render than SQLite to answer.
    """
    if not keys:
        return {}
    found: Result[Any]
    if conn.dialect.name == "sqlite":
        found = await conn.exec_driver_sql(
            f'SELECT "key", person_id, case_id FROM {links.name} WHERE "key" IN (SELECT value FROM json_each(?))',
            (json.dumps(sorted(keys)),),
        )
    else:
        found = await conn.execute(
            select(links.c.key, links.c.person_id, links.c.case_id).where(links.c.key.in_(sorted(keys)))
        )
    rows: list[Any] = list(found)
    return {str(key): (person, case) for key, person, case in rows}
