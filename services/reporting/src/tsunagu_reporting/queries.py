"""Reads of the live projection generations: sums for the tables, timelines, grants."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events.contracts.common import JST
from tsunagu_events.contracts.intake import ConsentGiven
from tsunagu_events.envelope import format_time
from tsunagu_events.reference import Ward
from tsunagu_platform.projection import Tables
from tsunagu_platform.serving import ServingTables, serves

from tsunagu_reporting.domain.tables import Group, Sums, fiscal_year_end


def end_of_day_utc(day: date) -> str:
    """The last instant of a Japan-time day, in the spelling facts are stamped with."""
    return format_time(datetime.combine(day + timedelta(days=1), time(0), tzinfo=JST) - timedelta(microseconds=1))


def groups_of(ward: Ward, by: str) -> list[Group]:
    if by == "area":
        return [Group(a.id, a.label_ja) for a in ward.areas]
    if by == "district":
        return [Group(d.id, d.label_ja) for d in ward.districts]
    return [Group("ward", ward.municipality.label_ja)]


async def fact_sums(
    engine: AsyncEngine,
    tables: Tables,
    years: Sequence[int],
    metrics: Sequence[str],
    by: str,
    as_of: date | None,
) -> Sums:
    facts = tables["facts"]
    key = {"area": facts.c.area_id, "district": facts.c.district_id}.get(by)
    columns = [facts.c.fiscal_year, facts.c.metric, facts.c.dimension, func.sum(facts.c.value)]
    query = select(*(columns if key is None else [key, *columns])).where(
        facts.c.fiscal_year.in_(list(years)), facts.c.metric.in_(list(metrics))
    )
    if as_of is not None:
        query = query.where(facts.c.recorded_at <= end_of_day_utc(as_of))
    group_by = [facts.c.fiscal_year, facts.c.metric, facts.c.dimension]
    query = query.group_by(*(group_by if key is None else [key, *group_by]))
    out: dict[tuple[str, int, str, str], int] = {}
    async with engine.connect() as conn:
        for row in await conn.execute(query):
            if key is None:
                out[("ward", int(row[0]), str(row[1]), str(row[2]))] = int(row[3] or 0)
            else:
                out[(str(row[0]), int(row[1]), str(row[2]), str(row[3]))] = int(row[4] or 0)
    return out


async def subscribers_at_end(
    engine: AsyncEngine, tables: Tables, year: int, by: str, as_of: date | None
) -> dict[str, int]:
    """Subscribers are a level: the sum of every change up to the end of the fiscal year."""
    facts = tables["facts"]
    key = {"area": facts.c.area_id, "district": facts.c.district_id}.get(by)
    query = select(*([key] if key is not None else []), func.sum(facts.c.value)).where(
        facts.c.metric == "subscribers", facts.c.occurred_on <= fiscal_year_end(year).isoformat()
    )
    if as_of is not None:
        query = query.where(facts.c.recorded_at <= end_of_day_utc(as_of))
    if key is not None:
        query = query.group_by(key)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    if key is None:
        return {"ward": int(rows[0][0] or 0)} if rows else {}
    return {str(r[0]): int(r[1] or 0) for r in rows}


async def first_days(engine: AsyncEngine, tables: Tables, years: Sequence[int]) -> dict[int, date]:
    """The first day each fiscal year has a consultation on: a year whose windows opened late is partial."""
    facts = tables["facts"]
    query = (
        select(facts.c.fiscal_year, func.min(facts.c.occurred_on))
        .where(facts.c.fiscal_year.in_(list(years)), facts.c.metric == "consultation")
        .group_by(facts.c.fiscal_year)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {int(y): date.fromisoformat(str(d)) for y, d in rows if d}


async def distinct_subjects(engine: AsyncEngine, tables: Tables, year: int, metric: str, as_of: date | None) -> int:
    facts = tables["facts"]
    query = select(func.count(func.distinct(facts.c.subject))).where(
        facts.c.fiscal_year == year, facts.c.metric == metric
    )
    if as_of is not None:
        query = query.where(facts.c.recorded_at <= end_of_day_utc(as_of))
    async with engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


@dataclass(frozen=True)
class Turnaround:
    requested: int
    accepted: int
    completed: int
    median_hours_to_accept: float | None
    median_hours_to_complete: float | None
    overdue: int
    open_overdue: int


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _hours(start: str, end: str) -> float:
    a = datetime.fromisoformat(start.replace("Z", "+00:00"))
    b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    return round((b - a).total_seconds() / 3600, 2)


async def referral_turnaround(engine: AsyncEngine, tables: Tables, year: int, today: date) -> Turnaround:
    table = tables["referrals"]
    async with engine.connect() as conn:
        rows = (await conn.execute(select(table).where(table.c.fiscal_year == year))).mappings().all()
    to_accept = [_hours(r["requested_at"], r["accepted_at"]) for r in rows if r["accepted_at"]]
    to_complete = [_hours(r["requested_at"], r["completed_at"]) for r in rows if r["completed_at"]]
    open_overdue = sum(
        1 for r in rows if not r["closed"] and not r["accepted_at"] and date.fromisoformat(r["due_on"]) < today
    )
    return Turnaround(
        requested=len(rows),
        accepted=len(to_accept),
        completed=len(to_complete),
        median_hours_to_accept=_median(to_accept),
        median_hours_to_complete=_median(to_complete),
        overdue=sum(1 for r in rows if r["overdue"]),
        open_overdue=open_overdue,
    )


@dataclass(frozen=True)
class Entry:
    event_id: str
    event_type: str
    stream_id: str
    stream_version: int
    person_id: str | None
    case_id: str | None
    recorded_at: str
    received_at: str
    agency_id: str | None
    actor_staff: str | None
    data: dict[str, Any]


async def timeline(
    engine: AsyncEngine,
    tables: Tables,
    *,
    person_id: str | None = None,
    case_id: str | None = None,
    as_of: datetime | None = None,
    basis: str = "recorded",
) -> list[Entry]:
    """Entries in time order, as they stood at `as_of` by recording time (or by when reporting received them)."""
    table: Table = tables["entries"]
    where = []
    if person_id is not None:
        where.append(table.c.person_id == person_id)
    if case_id is not None:
        where.append(table.c.case_id == case_id)
    query = select(table).where(or_(*where) if person_id and case_id else and_(*where))
    if as_of is not None:
        column = table.c.received_at if basis == "received" else table.c.recorded_at
        query = query.where(column <= format_time(as_of))
    query = query.order_by(table.c.recorded_at, table.c.stream_id, table.c.stream_version, table.c.seq)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    seen: set[str] = set()
    out = []
    for r in rows:
        if r["event_id"] in seen:
            continue
        seen.add(r["event_id"])
        out.append(
            Entry(
                r["event_id"],
                r["event_type"],
                r["stream_id"],
                r["stream_version"],
                r["person_id"],
                r["case_id"],
                r["recorded_at"],
                r["received_at"],
                r["agency_id"],
                r["actor_staff"],
                json.loads(r["data"]),
            )
        )
    return out


async def person_of_case(engine: AsyncEngine, tables: Tables, case_id: str) -> str | None:
    links = tables["links"]
    async with engine.connect() as conn:
        value = await conn.scalar(select(links.c.person_id).where(links.c.key == f"case_id:{case_id}"))
    return str(value) if value else None


async def granted(engine: AsyncEngine, tables: Tables, person_id: str, agency_id: str) -> str | None:
    """The basis on which an agency may read the person's timeline now, or None.

    - served: the agency serves the person now (registering window, lead agency of an open case);
      having filed a consultation, a contact or a referral about the person is not enough;
    - support_meeting, statutory: a statutory basis recorded for the agency;
    - consent: a consent in force naming the agency (or its district's windows), recorded by an
      agency that serves the person: a consent an agency recorded for itself grants nothing.
    """
    grants = tables["grants"]
    serving = ServingTables(tables["serving_registrations"], tables["serving_cases"])
    async with engine.connect() as conn:
        if await serves(conn, serving, agency_id, person_id):
            return "served"
        rows = (
            await conn.execute(
                select(grants.c.basis, grants.c.reference).where(
                    grants.c.person_id == person_id,
                    grants.c.agency_id == agency_id,
                    grants.c.revoked_at.is_(None),
                    grants.c.basis != "served",
                )
            )
        ).all()
        bases = {str(basis) for basis, _ in rows}
        for basis in ("support_meeting", "statutory"):
            if basis in bases:
                return basis
        consents = {str(reference) for basis, reference in rows if basis == "consent"}
        if consents and await _recorded_by_a_server(conn, tables, serving, person_id, consents):
            return "consent"
    return None


async def _recorded_by_a_server(
    conn: AsyncConnection, tables: Tables, serving: ServingTables, person_id: str, consents: set[str]
) -> bool:
    """Whether one of these consents, not expired, was recorded by an agency (the actor, or the agency
    the event names) that serves the person."""
    entries = tables["entries"]
    today = datetime.now(JST).date().isoformat()
    rows = await conn.execute(
        select(entries.c.agency_id, entries.c.data).where(
            entries.c.person_id == person_id, entries.c.event_type == ConsentGiven.event_type
        )
    )
    for actor, body in rows.all():
        data = json.loads(body)
        if data.get("consent_id") not in consents:
            continue
        expires = data.get("expires_on")
        if isinstance(expires, str) and expires < today:
            continue
        for recorder in {actor, data.get("recorded_by_agency")}:
            if isinstance(recorder, str) and await serves(conn, serving, recorder, person_id):
                return True
    return False


BASIS_ORDER = ["served", "support_meeting", "statutory", "consent"]
"""The grounds `granted` names, strongest first."""
