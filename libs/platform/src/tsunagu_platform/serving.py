"""Who serves a person: the registering window and the lead agency of each open case.

Authorization by agency rests on one fact every service needs and only intake decides:
which agency already serves a person. Intake announces it on `tsunagu.intake.events`
(PersonRegistered's actor is the registering window; CaseOpened, LeadAgencyHandedOver,
CaseClosed and CaseReopened say who leads which case and whether it is open). Each
service keeps its own copy of that view in two small tables, written by its consumer
or projection in the same transaction as the inbox row or checkpoint of the event, and
asks `serves` before any command or query on a person's data.

Nothing here trusts what a caller says about itself: a consent or a consultation at
one's own window never makes an agency serve a person.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Column, Index, MetaData, String, Table, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events.contracts.intake import (
    CaseClosed,
    CaseOpened,
    CaseReopened,
    LeadAgencyHandedOver,
    PersonRegistered,
)

from tsunagu_platform.sql import insert_ignoring_duplicates

SERVING_TYPES: frozenset[str] = frozenset(
    {
        PersonRegistered.event_type,
        CaseOpened.event_type,
        LeadAgencyHandedOver.event_type,
        CaseClosed.event_type,
        CaseReopened.event_type,
    }
)
"""The intake event types the view is built from."""

REGISTERING_WINDOW = "registering_window"
LEAD_AGENCY = "lead_agency"
UNKNOWN_AGENCY = "unknown"
"""The registering agency of a PersonRegistered without an actor (as intake records it): serves no caller."""


@dataclass(frozen=True)
class ServingTables:
    registrations: Table
    """person_id → the agency that registered the person."""
    cases: Table
    """case_id → person, lead agency, open or not."""


def serving_tables(metadata: MetaData, prefix: str) -> ServingTables:
    """The two tables of the view, named `<prefix>_registrations` and `<prefix>_cases`."""
    registrations = Table(
        f"{prefix}_registrations",
        metadata,
        Column("person_id", String(128), primary_key=True),
        Column("agency_id", String(100), nullable=False),
    )
    cases = Table(
        f"{prefix}_cases",
        metadata,
        Column("case_id", String(128), primary_key=True),
        Column("person_id", String(128), nullable=False),
        Column("lead_agency_id", String(100), nullable=False),
        Column("open", Boolean, nullable=False),
        Index(f"ix_{prefix}_cases_person", "person_id", "lead_agency_id"),
    )
    return ServingTables(registrations, cases)


@dataclass(frozen=True)
class ServingEvent:
    """What the view needs of one event: its type, its data and the agency of its actor."""

    event_type: str
    data: Mapping[str, Any]
    actor_agency: str | None


async def apply_serving(conn: AsyncConnection, tables: ServingTables, events: Iterable[ServingEvent]) -> None:
    """Apply intake's events, in their order, to the view; other types are passed over.

    Registrations are written at once (one statement); case events in order, since one batch
    may open a case and hand it over. Redelivery changes nothing: a person or case seen
    twice keeps its first row, and the updates set what the event says.
    """
    registrations: list[dict[str, Any]] = []
    for event in events:
        data = event.data
        kind = event.event_type
        if kind == PersonRegistered.event_type:
            registrations.append(
                {"person_id": str(data["person_id"]), "agency_id": event.actor_agency or UNKNOWN_AGENCY}
            )
        elif kind == CaseOpened.event_type:
            await insert_ignoring_duplicates(
                conn,
                tables.cases,
                [
                    {
                        "case_id": str(data["case_id"]),
                        "person_id": str(data["person_id"]),
                        "lead_agency_id": str(data["lead_agency_id"]),
                        "open": True,
                    }
                ],
            )
        elif kind == LeadAgencyHandedOver.event_type:
            await _set(conn, tables, str(data["case_id"]), lead_agency_id=str(data["to_agency_id"]))
        elif kind == CaseClosed.event_type:
            await _set(conn, tables, str(data["case_id"]), open=False)
        elif kind == CaseReopened.event_type:
            await _set(conn, tables, str(data["case_id"]), open=True)
    await insert_ignoring_duplicates(conn, tables.registrations, registrations)


async def _set(conn: AsyncConnection, tables: ServingTables, case_id: str, **values: Any) -> None:
    await conn.execute(update(tables.cases).where(tables.cases.c.case_id == case_id).values(**values))


async def serving_basis(conn: AsyncConnection, tables: ServingTables, agency: str, person_id: str) -> str | None:
    """Why `agency` serves the person (`registering_window`, `lead_agency`), or None when it does not."""
    if not agency or agency == UNKNOWN_AGENCY:
        return None
    registered_by = await conn.scalar(
        select(tables.registrations.c.agency_id).where(tables.registrations.c.person_id == person_id)
    )
    if registered_by == agency:
        return REGISTERING_WINDOW
    c = tables.cases.c
    lead = await conn.scalar(
        select(c.case_id).where(c.person_id == person_id, c.lead_agency_id == agency, c.open.is_(True)).limit(1)
    )
    return LEAD_AGENCY if lead is not None else None


async def serves(conn: AsyncConnection, tables: ServingTables, agency: str, person_id: str) -> bool:
    """Whether `agency` already serves the person: its registering window or the lead of an open case."""
    return await serving_basis(conn, tables, agency, person_id) is not None


async def serving_agencies(conn: AsyncConnection, tables: ServingTables, person_id: str) -> frozenset[str]:
    """Every agency that serves the person now: the registering window and the leads of open cases.

    For a policy that decides on the whole set (a pure rule given the facts) rather than asking
    `serves` for one agency; the placeholder of a registration without an actor is never in it.
    """
    c = tables.cases.c
    query = union_all(
        select(tables.registrations.c.agency_id).where(tables.registrations.c.person_id == person_id),
        select(c.lead_agency_id).where(c.person_id == person_id, c.open.is_(True)),
    )
    return frozenset(row[0] for row in await conn.execute(query)) - {UNKNOWN_AGENCY}


@dataclass(frozen=True)
class ServedCase:
    """A case as intake announced it: whose it is, who leads it, whether it is open."""

    person_id: str
    lead_agency_id: str
    open: bool


async def served_case(conn: AsyncConnection, tables: ServingTables, case_id: str) -> ServedCase | None:
    """The case intake announced under `case_id`, or None: lets a policy check that a case named in a
    command is the person's, and that the caller leads it while it is open (e.g. to hand it over)."""
    c = tables.cases.c
    row = (await conn.execute(select(c.person_id, c.lead_agency_id, c.open).where(c.case_id == case_id))).first()
    return ServedCase(str(row[0]), str(row[1]), bool(row[2])) if row is not None else None
