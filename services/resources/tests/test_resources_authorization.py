"""Authorization by agency in resources: a person's participation support only for an agency
that already serves the person; district data written only for the caller's own district."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tsunagu_events.contracts.common import Sealed
from tsunagu_events.contracts.intake import (
    Approach,
    CaseClosed,
    CaseOpened,
    CaseReopened,
    ConsentGiven,
    ConsentScope,
    LeadAgencyHandedOver,
    PersonRegistered,
)
from tsunagu_platform.auth import Role

from .conftest import Harness, auth, envelope
from .test_resources_component import INTAKE, INTAKE_SOURCE, eventually, register

REGISTERING = "ikejiri.comprehensive_support_center"
STRANGER = "okusawa.community_center"
NEIGHBOUR = "ikejiri.community_center"
SEALED = Sealed(kid="intake/x/1", nonce="AAAAAAAAAAAAAAAA", ct="c2VjcmV0")
AT = datetime(2021, 4, 1, tzinfo=UTC)


async def person_served_by(h: Harness, person: str, agency: str = REGISTERING) -> None:
    """Intake registers the person at `agency` and records a participation consent for any agency."""
    registered = envelope(
        PersonRegistered(person_id=person, district_id="ikejiri", name=SEALED),
        stream=person,
        version=1,
        source=INTAKE_SOURCE,
    ).model_copy(update={"actoragency": agency, "actorstaff": "staff-r"})
    await h.publish(INTAKE, registered)
    consent = ConsentGiven(
        consent_id=f"consent-{person}",
        person_id=person,
        scope=ConsentScope.PARTICIPATION,
        given_at=AT,
        recorded_by_agency=agency,
    )
    await h.publish(INTAKE, envelope(consent, stream=person, version=2, source=INTAKE_SOURCE))


async def case_event(h: Harness, case: str, version: int, payload: Any) -> None:
    await h.publish(INTAKE, envelope(payload, stream=case, version=version, source=INTAKE_SOURCE))


async def status_of(h: Harness, body: dict[str, Any], agency: str) -> int:
    return (await h.client.post("/participations", json=body, headers=auth(agency))).status_code


async def test_staff_of_an_agency_not_serving_the_person_cannot_start_a_participation(harness: Harness) -> None:
    rid = (await register(harness))["resource_id"]
    person = "person-0b6f2c1e-2222-4a4a-8888-000000000001"
    await person_served_by(harness, person)
    body = {"person_id": person, "resource_id": rid, "started_on": "2021-09-01"}

    async def started_by_the_registering_window() -> Any:
        response = await harness.client.post("/participations", json=body, headers=auth(REGISTERING))
        return response.json() if response.status_code == 201 else None

    assert await eventually(started_by_the_registering_window)
    # The consent names no agency, so it covered anyone before; serving the person is what counts now.
    for agency in (STRANGER, NEIGHBOUR):
        refused = await harness.client.post("/participations", json=body, headers=auth(agency))
        assert refused.status_code == 403, refused.text
        problem = refused.json()
        assert problem["code"] == "not_serving"
        assert "(" in problem["title"]
        assert "担当" in problem["reason_ja"]
    system = await harness.client.post("/participations", json=body, headers=auth(STRANGER, Role.AGENCY_SYSTEM))
    assert system.status_code == 403
    auditor = await harness.client.post("/participations", json=body, headers=auth(REGISTERING, Role.AUDITOR))
    assert auditor.status_code == 403
    admin = await harness.client.post("/participations", json=body, headers=auth("setagaya.branch_office", Role.ADMIN))
    assert admin.status_code == 201, admin.text


async def test_staff_of_an_agency_not_serving_the_person_cannot_read_or_change_its_participation(
    harness: Harness,
) -> None:
    rid = (await register(harness))["resource_id"]
    person = "person-0b6f2c1e-2222-4a4a-8888-000000000002"
    await person_served_by(harness, person)
    body = {"person_id": person, "resource_id": rid, "started_on": "2021-09-01"}

    async def started() -> Any:
        response = await harness.client.post("/participations", json=body, headers=auth(REGISTERING))
        return response.json() if response.status_code == 201 else None

    pid = (await eventually(started))["participation_id"]
    stranger = auth(STRANGER)
    assert (await harness.client.get(f"/participations/{pid}", headers=stranger)).status_code == 403
    assert (await harness.client.get(f"/participations/{pid}", headers=auth(role=Role.AUDITOR))).status_code == 403
    attended = await harness.client.post(
        f"/participations/{pid}/attendance", json={"attended_on": "2021-09-08"}, headers=stranger
    )
    assert attended.status_code == 403
    ended = await harness.client.post(
        f"/participations/{pid}/end", json={"ended_on": "2021-09-09", "reason": "declined"}, headers=stranger
    )
    assert ended.status_code == 403
    state = (await harness.client.get(f"/participations/{pid}", headers=auth(REGISTERING))).json()
    assert state["state"] == "active"
    assert state["attended"] == []


async def test_the_lead_agency_of_an_open_case_serves_the_person_until_the_case_closes(harness: Harness) -> None:
    rid = (await register(harness))["resource_id"]
    person = "person-0b6f2c1e-2222-4a4a-8888-000000000003"
    case = "case-0b6f2c1e-2222-4a4a-8888-000000000003"
    lead, next_lead = "specialist.poverty_support", "taishido.comprehensive_support_center"
    await person_served_by(harness, person)
    body = {"person_id": person, "resource_id": rid, "started_on": "2021-09-01"}
    await case_event(
        harness,
        case,
        1,
        CaseOpened(
            case_id=case,
            person_id=person,
            lead_agency_id=lead,
            district_id="ikejiri",
            approach=Approach.BOTH,
            opened_at=AT,
        ),
    )

    async def lead_allowed() -> bool:
        return await status_of(harness, body, lead) == 201

    await eventually(lead_allowed)
    await case_event(harness, case, 2, CaseClosed(case_id=case, reason="goals_met", closed_at=AT))

    async def lead_refused() -> bool:
        return await status_of(harness, body, lead) == 403

    await eventually(lead_refused)
    await case_event(harness, case, 3, CaseReopened(case_id=case, reopened_at=AT))
    await eventually(lead_allowed)
    await case_event(
        harness,
        case,
        4,
        LeadAgencyHandedOver(case_id=case, from_agency_id=lead, to_agency_id=next_lead, handed_over_at=AT),
    )
    await eventually(lead_refused)
    assert await status_of(harness, body, next_lead) == 201
    assert await status_of(harness, body, REGISTERING) == 201


async def test_staff_cannot_write_another_districts_data(harness: Harness) -> None:
    rid = (await register(harness))["resource_id"]  # ikejiri, by ikejiri's welfare council office
    okusawa = auth(STRANGER)
    refused = await harness.client.post(
        "/resources",
        headers=okusawa,
        json={
            "district_id": "ikejiri",
            "kind": "salon",
            "organization_name": "x",
            "service_name": "y",
            "effective_on": "2021-04-01",
        },
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "other_district"
    assert (await harness.client.patch(f"/resources/{rid}", json={"capacity": 1}, headers=okusawa)).status_code == 403
    visit = {"district_id": "ikejiri", "category": "business_npo", "visited_on": "2021-07-01"}
    assert (await harness.client.post("/visits", json=visit, headers=okusawa)).status_code == 403
    news = await harness.client.post(
        "/districts/ikejiri/newsletter-issues", json={"sent_on": "2021-05-01"}, headers=okusawa
    )
    assert news.status_code == 403
    system = auth(STRANGER, Role.AGENCY_SYSTEM)
    assert (await harness.client.post("/visits", json=visit, headers=system)).status_code == 403
    # The branch office of ikejiri's area may; another area's may not.
    assert (await harness.client.post("/visits", json=visit, headers=auth("setagaya.branch_office"))).status_code == 201
    assert (await harness.client.post("/visits", json=visit, headers=auth("tamagawa.branch_office"))).status_code == 403
    assert (await harness.client.post("/visits", json=visit, headers=auth(NEIGHBOUR))).status_code == 201
    assert (await harness.client.get(f"/resources/{rid}", headers=okusawa)).status_code == 200
    unchanged = (await harness.client.get(f"/resources/{rid}")).json()
    assert unchanged["capacity"] == 20
