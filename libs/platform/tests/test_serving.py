"""Who serves a person, from intake's events: the registering window, and the lead agency of an open case."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_events.contracts.intake import (
    CaseClosed,
    CaseOpened,
    CaseReopened,
    ConsentGiven,
    LeadAgencyHandedOver,
    PersonRegistered,
)
from tsunagu_platform.serving import (
    ServedCase,
    ServingEvent,
    apply_serving,
    served_case,
    serving_agencies,
    serving_basis,
    serving_tables,
)

PERSON = "person-1"
WINDOW = "ikejiri.comprehensive_support_center"
LEAD = "specialist.poverty_support"
NEXT = "taishido.comprehensive_support_center"


def opened(case: str = "case-1", lead: str = LEAD) -> ServingEvent:
    data = {"case_id": case, "person_id": PERSON, "lead_agency_id": lead}
    return ServingEvent(CaseOpened.event_type, data, WINDOW)


async def test_the_registering_window_and_the_lead_of_an_open_case_serve_the_person(engine: AsyncEngine) -> None:
    tables = serving_tables(MetaData(), "t_serving")
    async with engine.begin() as conn:
        await conn.run_sync(tables.registrations.metadata.create_all)
        registered = ServingEvent(PersonRegistered.event_type, {"person_id": PERSON}, WINDOW)
        # A consent naming an agency is not serving: only the five types count.
        consent = ServingEvent(ConsentGiven.event_type, {"person_id": PERSON, "agency_ids": [NEXT]}, NEXT)
        await apply_serving(conn, tables, [registered, consent, opened(), registered, opened(lead=NEXT)])
        assert await serving_basis(conn, tables, WINDOW, PERSON) == "registering_window"
        assert await serving_basis(conn, tables, LEAD, PERSON) == "lead_agency"
        assert await serving_basis(conn, tables, NEXT, PERSON) is None  # a redelivered CaseOpened changes nothing
        await apply_serving(conn, tables, [ServingEvent(CaseClosed.event_type, {"case_id": "case-1"}, LEAD)])
        assert await serving_basis(conn, tables, LEAD, PERSON) is None
        assert await serving_basis(conn, tables, WINDOW, PERSON) == "registering_window"
        await apply_serving(
            conn,
            tables,
            [
                ServingEvent(CaseReopened.event_type, {"case_id": "case-1"}, LEAD),
                ServingEvent(LeadAgencyHandedOver.event_type, {"case_id": "case-1", "to_agency_id": NEXT}, LEAD),
            ],
        )
        assert await serving_basis(conn, tables, LEAD, PERSON) is None
        assert await serving_basis(conn, tables, NEXT, PERSON) == "lead_agency"
        assert await serving_basis(conn, tables, NEXT, "person-2") is None


async def test_a_person_registered_without_an_actor_is_served_by_nobody(engine: AsyncEngine) -> None:
    tables = serving_tables(MetaData(), "t_serving_anon")
    async with engine.begin() as conn:
        await conn.run_sync(tables.registrations.metadata.create_all)
        await apply_serving(conn, tables, [ServingEvent(PersonRegistered.event_type, {"person_id": PERSON}, None)])
        assert await serving_basis(conn, tables, "unknown", PERSON) is None
        assert await serving_basis(conn, tables, "", PERSON) is None


async def test_the_serving_agencies_are_the_window_and_the_leads_of_open_cases_only(engine: AsyncEngine) -> None:
    tables = serving_tables(MetaData(), "t_serving_set")
    async with engine.begin() as conn:
        await conn.run_sync(tables.registrations.metadata.create_all)
        registered = ServingEvent(PersonRegistered.event_type, {"person_id": PERSON}, WINDOW)
        await apply_serving(conn, tables, [registered, opened(), opened("case-2", NEXT)])
        assert await serving_agencies(conn, tables, PERSON) == {WINDOW, LEAD, NEXT}
        await apply_serving(conn, tables, [ServingEvent(CaseClosed.event_type, {"case_id": "case-2"}, NEXT)])
        assert await serving_agencies(conn, tables, PERSON) == {WINDOW, LEAD}
        assert await serving_agencies(conn, tables, "person-2") == frozenset()


async def test_a_registration_without_an_actor_adds_no_serving_agency(engine: AsyncEngine) -> None:
    tables = serving_tables(MetaData(), "t_serving_set_anon")
    async with engine.begin() as conn:
        await conn.run_sync(tables.registrations.metadata.create_all)
        await apply_serving(conn, tables, [ServingEvent(PersonRegistered.event_type, {"person_id": PERSON}, None)])
        assert await serving_agencies(conn, tables, PERSON) == frozenset()


async def test_a_served_case_tells_its_person_its_lead_and_whether_it_is_open(engine: AsyncEngine) -> None:
    tables = serving_tables(MetaData(), "t_serving_case")
    async with engine.begin() as conn:
        await conn.run_sync(tables.registrations.metadata.create_all)
        assert await served_case(conn, tables, "case-1") is None
        await apply_serving(conn, tables, [opened()])
        assert await served_case(conn, tables, "case-1") == ServedCase(PERSON, LEAD, True)
        await apply_serving(
            conn,
            tables,
            [
                ServingEvent(LeadAgencyHandedOver.event_type, {"case_id": "case-1", "to_agency_id": NEXT}, LEAD),
                ServingEvent(CaseClosed.event_type, {"case_id": "case-1"}, NEXT),
            ],
        )
        assert await served_case(conn, tables, "case-1") == ServedCase(PERSON, NEXT, False)
