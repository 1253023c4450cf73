"""Which agencies serve a person, as intake's events tell it.

The access policy lets an agency refer a person, or bring them to a meeting, only when
it already serves them: the window that registered them, or the lead agency of one of
their open cases. Referral learns both from intake's events on the topic it already
consumes for the consent view (a consumer of its own, `referral.serving-view`), so no agency
can make itself a party by naming itself in a referral command.
"""

from __future__ import annotations

from sqlalchemy import select, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events.contracts.intake import CaseClosed, CaseOpened, CaseReopened, LeadAgencyHandedOver, PersonRegistered
from tsunagu_platform.consumer import ReceivedEvent
from tsunagu_platform.sql import insert_ignoring_duplicates, upsert

from tsunagu_referral.tables import cases, person_agencies

HANDLES = [
    PersonRegistered.event_type,
    CaseOpened.event_type,
    LeadAgencyHandedOver.event_type,
    CaseClosed.event_type,
    CaseReopened.event_type,
]


async def apply_intake_event(conn: AsyncConnection, event: ReceivedEvent) -> None:
    payload = event.payload
    if isinstance(payload, PersonRegistered):
        agency = event.envelope.actoragency
        if agency:
            await insert_ignoring_duplicates(
                conn, person_agencies, [{"person_id": payload.person_id, "agency_id": agency, "basis": "registered"}]
            )
    elif isinstance(payload, CaseOpened):
        await upsert(
            conn,
            cases,
            [
                {
                    "case_id": payload.case_id,
                    "person_id": payload.person_id,
                    "lead_agency_id": payload.lead_agency_id,
                    "open": True,
                }
            ],
            keys=["case_id"],
            update=["lead_agency_id", "open"],
        )
    elif isinstance(payload, LeadAgencyHandedOver):
        await conn.execute(
            update(cases).where(cases.c.case_id == payload.case_id).values(lead_agency_id=payload.to_agency_id)
        )
    elif isinstance(payload, CaseClosed):
        await conn.execute(update(cases).where(cases.c.case_id == payload.case_id).values(open=False))
    elif isinstance(payload, CaseReopened):
        await conn.execute(update(cases).where(cases.c.case_id == payload.case_id).values(open=True))


async def serving_agencies(conn: AsyncConnection, person_id: str) -> set[str]:
    """The registering window and the lead agencies of the person's open cases."""
    query = union_all(
        select(person_agencies.c.agency_id).where(person_agencies.c.person_id == person_id),
        select(cases.c.lead_agency_id).where(cases.c.person_id == person_id, cases.c.open.is_(True)),
    )
    return {row[0] for row in await conn.execute(query)}


async def case_of(conn: AsyncConnection, case_id: str) -> tuple[str, str, bool] | None:
    """(person, lead agency, open) of a case intake announced, or None."""
    row = (
        await conn.execute(
            select(cases.c.person_id, cases.c.lead_agency_id, cases.c.open).where(cases.c.case_id == case_id)
        )
    ).first()
    return (row[0], row[1], bool(row[2])) if row else None
