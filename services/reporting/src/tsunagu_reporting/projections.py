"""The reporting projections: counted facts for the annual tables and indicators, and the
companion-support timelines. Both are rebuilt from the three services' topics into new
generation tables while the live ones keep answering (tsunagu_platform.projection).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events.contracts.common import fiscal_year_of
from tsunagu_events.envelope import format_time
from tsunagu_events.reference import Ward, ward_for
from tsunagu_events.topics import events_topic
from tsunagu_platform.consumer import ReceivedEvent
from tsunagu_platform.projection import Tables
from tsunagu_platform.sql import insert_ignoring_duplicates, upsert

from tsunagu_reporting.domain.facts import (
    CONSULTATION_RECEIVED,
    CONSULTATION_RECLASSIFIED,
    GAP_NEED_MARKED,
    ConsultationState,
    Fact,
    consultation_facts,
    consultation_state,
    correction_facts,
    day_of,
    referral_facts,
    simple_facts,
)
from tsunagu_reporting.domain.timeline import agency_of, grants_of, persons_in, redact, service_of, short_type

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

    def define(self, metadata: MetaData, generation: int) -> Tables:
        g = generation
        facts = Table(
            f"rep_facts_g{g}",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("event_id", String(128), nullable=False),
            Column("fiscal_year", Integer, nullable=False),
            Column("metric", String(48), nullable=False),
            Column("dimension", String(64), nullable=False),
            Column("district_id", String(64), nullable=False),
            Column("area_id", String(64), nullable=False),
            Column("value", Integer, nullable=False),
            Column("occurred_on", String(10), nullable=False),
            Column("recorded_at", String(32), nullable=False),
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
        """Buffer the common counts and write them in bulk; corrections first flush what they read."""
        states: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []

        async def flush_states() -> None:
            if states:
                await insert_ignoring_duplicates(conn, tables["consultations"], states)
                states.clear()

        for event in events:
            envelope = event.envelope
            data = envelope.data
            kind = envelope.type
            facts: list[Fact]
            if kind == CONSULTATION_RECEIVED:
                state = consultation_state(data, self.places.report_group(str(data["window_type"])))
                states.append(_state_row(state))
                facts = consultation_facts(state)
            elif kind in (CONSULTATION_RECLASSIFIED, GAP_NEED_MARKED):
                await flush_states()
                facts = await self._correct(conn, tables, kind, data)
            elif kind.startswith("tsunagu.resources."):
                facts = simple_facts(kind, data, self.places.area_of)
            else:
                facts = referral_facts(kind, data, self.places.place_of_agency)
                facts += await self._track_referral(conn, tables, kind, data)
            recorded = format_time(envelope.time)
            rows += [
                {
                    "event_id": envelope.id,
                    "fiscal_year": f.fiscal_year,
                    "metric": f.metric,
                    "dimension": f.dimension,
                    "district_id": f.district_id,
                    "area_id": f.area_id,
                    "value": f.value,
                    "occurred_on": f.occurred_on,
                    "recorded_at": recorded,
                    "subject": f.subject,
                }
                for f in facts
            ]
        await flush_states()
        if rows:
            await conn.execute(tables["facts"].insert(), rows)

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
            after = ConsultationState(
                **{**dict(row), "expanded": bool(data["expanded"]), "compound_need": bool(data["compound_need"])}
            )
        else:
            after = ConsultationState(**{**dict(row), "gap_need": bool(data.get("marked", True))})
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


def _state_row(state: ConsultationState) -> dict[str, Any]:
    return {
        "consultation_id": state.consultation_id,
        "fiscal_year": state.fiscal_year,
        "report_group": state.report_group,
        "district_id": state.district_id,
        "area_id": state.area_id,
        "occurred_on": state.occurred_on,
        "expanded": state.expanded,
        "compound_need": state.compound_need,
        "gap_need": state.gap_need,
    }


LINK_FIELDS = ("case_id", "consultation_id", "referral_id", "participation_id")


class Timelines:
    """Every event about a person or case, in time order, with agency and actor; sealed fields
    replaced by a protected marker. Also who may read whose timeline (grants)."""

    name = "reporting.timelines"
    topics: Sequence[str] = SOURCE_TOPICS

    def __init__(self, tenant: str = DEFAULT_TENANT, topic_suffix: str = "") -> None:
        self.places = WardPlaces(ward_for(tenant))
        self.topics = source_topics(topic_suffix)

    def define(self, metadata: MetaData, generation: int) -> Tables:
        g = generation
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
        return {"entries": entries, "links": links, "grants": grants}

    async def apply(self, conn: AsyncConnection, tables: Tables, event: ReceivedEvent) -> None:
        await self.apply_batch(conn, tables, [event])

    async def apply_batch(self, conn: AsyncConnection, tables: Tables, events: Sequence[ReceivedEvent]) -> None:
        """Look up every link of the batch at once, keep them in memory, write entries in bulk."""
        wanted = {
            f"{name}:{e.envelope.data[name]}"
            for e in events
            for name in LINK_FIELDS
            if isinstance(e.envelope.data.get(name), str)
        }
        known: dict[str, tuple[str | None, str | None]] = {}
        if wanted:
            links = tables["links"]
            found = await conn.execute(
                select(links.c.key, links.c.person_id, links.c.case_id).where(links.c.key.in_(sorted(wanted)))
            )
            known = {str(k): (p, c) for k, p, c in found}
        new_links: dict[str, dict[str, Any]] = {}
        entries: list[dict[str, Any]] = []
        grants: list[dict[str, Any]] = []
        received = received_now()

        async def flush_grants() -> None:
            await insert_ignoring_duplicates(conn, tables["grants"], grants)
            grants.clear()

        for event in events:
            envelope = event.envelope
            data = envelope.data
            persons = persons_in(data)
            case_id = data.get("case_id") if isinstance(data.get("case_id"), str) else None
            keys = [f"{name}:{data[name]}" for name in LINK_FIELDS if isinstance(data.get(name), str)]
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
                new_links[key] = {"key": key, "person_id": person, "case_id": case_id}
            recorded = format_time(envelope.time)
            body = json.dumps(redact(data, service_of(envelope.type)), ensure_ascii=False, sort_keys=True)
            base = {
                "event_id": envelope.id,
                "event_type": envelope.type,
                "stream_id": envelope.streamid,
                "stream_version": envelope.streamversion,
                "case_id": case_id,
                "recorded_at": recorded,
                "received_at": received,
                "agency_id": agency_of(data, envelope.actoragency),
                "actor_staff": envelope.actorstaff,
                "data": body,
            }
            targets: list[str | None] = [*persons] or [None]
            entries += [{**base, "person_id": p} for p in targets]
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
        await upsert(conn, tables["links"], list(new_links.values()), keys=["key"], update=["person_id", "case_id"])
        if entries:
            await conn.execute(tables["entries"].insert(), entries)
        await flush_grants()

    def _grants(self, kind: str, data: dict[str, Any], persons: list[str], at: str) -> list[dict[str, Any]]:
        consent = short_type(kind) == "ConsentGiven"
        windows = self.places.windows_of(data.get("district_id")) if consent else []
        return [
            {"person_id": p, "agency_id": g.agency_id, "basis": g.basis, "reference": g.reference, "granted_at": at}
            for p in persons
            for g in grants_of(kind, data, windows)
        ]
