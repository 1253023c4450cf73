"""Timelines only for whoever serves the person: nothing an agency records about someone at its own
window, and no consent it records for itself, opens their companion-support record."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from reporting_support import Running, feed, token
from tsunagu_events import new_event_id, new_stream_id
from tsunagu_events.contracts.common import ConsultationCategory, Sealed
from tsunagu_events.contracts.intake import (
    Approach,
    CaseClosed,
    CaseOpened,
    Channel,
    ConsentGiven,
    ConsentScope,
    ConsultationReceived,
    ConsultedBy,
    ContactKind,
    ContactRecorded,
    LeadAgencyHandedOver,
    Outcome,
    PersonRegistered,
)
from tsunagu_platform.auth import Role
from tsunagu_reporting.scenario.writer import StreamWriter

START = datetime(2022, 6, 1, 1, 0, tzinfo=UTC)
REGISTERING = "ikejiri.comprehensive_support_center"
STRANGER = "okusawa.community_center"
SEALED = Sealed(kid="intake/x/1", nonce="AAAAAAAAAAAAAAAA", ct="c2VjcmV0")


def registered(w: StreamWriter, at: datetime) -> str:
    person = new_stream_id("person")
    w.emit(
        "intake",
        person,
        PersonRegistered(person_id=person, district_id="ikejiri", name=SEALED),
        at,
        agency=REGISTERING,
        staff="staff-r",
    )
    return person


def opened(w: StreamWriter, person: str, lead: str, at: datetime) -> str:
    case = new_stream_id("case")
    w.emit(
        "intake",
        case,
        CaseOpened(
            case_id=case,
            person_id=person,
            lead_agency_id=lead,
            district_id="ikejiri",
            approach=Approach.BOTH,
            opened_at=at,
        ),
        at,
        agency=REGISTERING,
        staff="staff-r",
    )
    return case


def filed(
    w: StreamWriter,
    person: str,
    window: str,
    district: tuple[str, str],
    category: ConsultationCategory,
    at: datetime,
    staff: str,
    summary: Sealed | None = None,
) -> str:
    """A consultation about the person received at a community center's window (district, area)."""
    consultation = new_stream_id("consultation")
    w.emit(
        "intake",
        consultation,
        ConsultationReceived(
            consultation_id=consultation,
            window_id=window,
            window_type="community_center",
            district_id=district[0],
            area_id=district[1],
            received_at=at,
            fiscal_year=2022,
            channel=Channel.WALK_IN,
            consulted_by=ConsultedBy.PERSON,
            categories=[category],
            expanded=False,
            compound_need=False,
            person_id=person,
            summary=summary,
            outcome=Outcome.INFORMATION_GIVEN,
        ),
        at + timedelta(minutes=2),
        agency=window,
        staff=staff,
    )
    return consultation


async def status(running: Running, person: str, agency: str) -> int:
    headers = token(Role.STAFF, agency=agency, staff=f"staff-{agency}")
    return (await running.client.get(f"/timelines/persons/{person}", headers=headers)).status_code


async def test_filing_a_consultation_or_contact_about_a_person_at_ones_own_window_does_not_open_their_timeline(
    running: Running,
) -> None:
    w = StreamWriter()
    person = registered(w, START)
    case = opened(w, person, REGISTERING, START + timedelta(minutes=1))
    filed(w, person, STRANGER, ("okusawa", "tamagawa"), ConsultationCategory.ABUSE_CONCERN, START, "staff-x")
    w.emit(
        "intake",
        case,
        ContactRecorded(
            case_id=case,
            contact_id=new_event_id(),
            kind=ContactKind.CALL,
            at=START + timedelta(minutes=3),
            agency_id="kitazawa.community_center",
        ),
        START + timedelta(minutes=3),
        agency="kitazawa.community_center",
        staff="staff-y",
    )
    await feed(running.reporting.timelines, w.out)
    assert await status(running, person, REGISTERING) == 200
    assert await status(running, person, STRANGER) == 403
    assert await status(running, person, "kitazawa.community_center") == 403
    refused_case = await running.client.get(
        f"/timelines/cases/{case}", headers=token(Role.STAFF, agency="kitazawa.community_center")
    )
    assert refused_case.status_code == 403
    reads = await running.client.get("/audit/reads", params={"subject_id": person}, headers=token(Role.AUDITOR))
    assert (f"staff-{STRANGER}", "refused") in {(r["staff"], r["basis"]) for r in reads.json()}


async def test_a_consent_an_agency_recorded_for_itself_does_not_open_the_timeline(running: Running) -> None:
    w = StreamWriter()
    person = registered(w, START)
    at = START + timedelta(minutes=1)
    expired = "kitazawa.community_center"
    for recorder, named, until in (
        (STRANGER, STRANGER, None),
        (REGISTERING, "taishido.community_center", None),
        (REGISTERING, expired, date(2022, 5, 31)),
    ):
        w.emit(
            "intake",
            person,
            ConsentGiven(
                consent_id=new_event_id(),
                person_id=person,
                scope=ConsentScope.NAMED_AGENCIES,
                agency_ids=[named],
                given_at=at,
                recorded_by_agency=recorder,
                expires_on=until,
            ),
            at,
            agency=recorder,
            staff="staff-c",
        )
    await feed(running.reporting.timelines, w.out)
    assert await status(running, person, STRANGER) == 403
    named_by_the_window = await running.client.get(
        f"/timelines/persons/{person}", headers=token(Role.STAFF, agency="taishido.community_center")
    )
    assert named_by_the_window.status_code == 200
    assert named_by_the_window.json()["basis"] == "consent"
    assert await status(running, person, expired) == 403


async def test_a_lead_agency_reads_the_timeline_only_while_it_leads_an_open_case(running: Running) -> None:
    w = StreamWriter()
    person = registered(w, START)
    first, second = "specialist.poverty_support", "taishido.comprehensive_support_center"
    case = opened(w, person, first, START + timedelta(minutes=1))
    await feed(running.reporting.timelines, w.out)
    assert await status(running, person, first) == 200
    done = len(w.out)
    w.emit(
        "intake",
        case,
        LeadAgencyHandedOver(
            case_id=case, from_agency_id=first, to_agency_id=second, handed_over_at=START + timedelta(minutes=2)
        ),
        START + timedelta(minutes=2),
        agency=first,
        staff="staff-l",
    )
    await feed(running.reporting.timelines, w.out[done:], start=done)
    assert await status(running, person, first) == 403
    assert await status(running, person, second) == 200
    done = len(w.out)
    w.emit(
        "intake",
        case,
        CaseClosed(case_id=case, reason="goals_met", closed_at=START + timedelta(minutes=3)),
        START + timedelta(minutes=3),
        agency=second,
        staff="staff-l",
    )
    await feed(running.reporting.timelines, w.out[done:], start=done)
    assert await status(running, person, second) == 403
    assert await status(running, person, REGISTERING) == 200
    system = token(Role.AGENCY_SYSTEM, agency=STRANGER)
    assert (await running.client.get(f"/timelines/persons/{person}", headers=system)).status_code == 403
