"""Authorization by agency (issue 14): only an agency that already serves a person acts on them.

Given a person, their consultation and their case, all recorded by the comprehensive
support center that registered the person, staff of okusawa's community center (another
district) try what the black-box probe did; every write is a 403 and changes nothing,
and the reads it tried to unlock stay closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from tsunagu_intake.tables import consents
from tsunagu_platform.auth import Role

from .helpers import CSC, Running, token

OKUSAWA = "okusawa.community_center"
KARASUYAMA = "karasuyama.community_center"
OWN = token(agency=CSC)
STRANGER = token(agency=OKUSAWA, staff="okusawa-1")
CONSULTATION: dict[str, Any] = {
    "window_id": CSC,
    "received_at": "2026-05-01T10:00:00+09:00",
    "channel": "walk_in",
    "consulted_by": "person",
    "categories": ["abuse_concern"],
    "outcome": "continued_support",
    "summary": "夫からの暴力の相談",
}


@dataclass
class Seed:
    person: str
    consultation: str
    case: str


async def seed(running: Running) -> Seed:
    client = running.client
    r = await client.post(
        "/persons",
        json={"name": "池尻 花子", "phone": "03-1111-2222", "address": "池尻1-1", "district_id": "ikejiri"},
        headers=OWN,
    )
    assert r.status_code == 201, r.text
    person = r.json()["id"]
    r = await client.post("/consultations", json=CONSULTATION | {"person_id": person}, headers=OWN)
    assert r.status_code == 201, r.text
    consultation = r.json()["id"]
    r = await client.post("/cases", json={"person_id": person, "approach": "both"}, headers=OWN)
    assert r.status_code == 201, r.text
    return Seed(person, consultation, r.json()["id"])


def assert_denied(response: Any) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["status"] == 403
    assert "(" in body["title"]
    assert body["title"].isascii() is False


async def test_staff_of_another_agency_cannot_correct_a_person(running: Running) -> None:
    s = await seed(running)
    r = await running.client.patch(f"/persons/{s.person}", json={"phone": "090-0000-0000"}, headers=STRANGER)
    assert_denied(r)
    details = (await running.client.get(f"/persons/{s.person}", headers=OWN)).json()
    assert details["phone"] == "03-1111-2222"


async def test_staff_of_another_agency_cannot_reclassify_change_or_mark_a_consultation(running: Running) -> None:
    s = await seed(running)
    c = f"/consultations/{s.consultation}"
    assert_denied(
        await running.client.post(f"{c}/reclassification", json={"categories": ["poverty"]}, headers=STRANGER)
    )
    assert_denied(await running.client.post(f"{c}/outcome", json={"outcome": "referred"}, headers=STRANGER))
    assert_denied(await running.client.post(f"{c}/gap-need", json={"marked": True}, headers=STRANGER))
    got = (await running.client.get(c, headers=OWN)).json()
    assert (got["categories"], got["outcome"], got["gap_need"], got["version"]) == (
        ["abuse_concern"],
        "continued_support",
        False,
        1,
    )


async def test_staff_of_another_agency_cannot_close_reopen_or_change_a_case(running: Running) -> None:
    s = await seed(running)
    k = f"/cases/{s.case}"
    steps: list[tuple[str, dict[str, Any]]] = [
        ("closure", {"reason": "moved_away"}),
        ("reopening", {}),
        ("approach", {"approach": "problem_solving"}),
        ("plans", {"goals": ["x"], "review_due": "2099-01-01"}),
        ("contacts", {"kind": "call", "at": "2026-05-02T10:00:00+09:00"}),
        ("reviews", {"next_review_due": "2099-01-01"}),
    ]
    for path, body in steps:
        assert_denied(await running.client.post(f"{k}/{path}", json=body, headers=STRANGER))
    assert (await running.client.get(k, headers=OWN)).json()["version"] == 1


async def test_an_agency_cannot_grant_itself_access_by_consent_case_or_handover(running: Running) -> None:
    s = await seed(running)
    client = running.client
    r = await client.post("/persons", json={"name": "奥沢 一郎"}, headers=STRANGER)
    theirs = r.json()["id"]
    attempts = [
        client.post(
            f"/persons/{s.person}/consents", json={"scope": "named_agencies", "agency_ids": [OKUSAWA]}, headers=STRANGER
        ),
        client.post(
            "/cases", json={"person_id": s.person, "lead_agency_id": OKUSAWA, "approach": "both"}, headers=STRANGER
        ),
        client.post(f"/cases/{s.case}/handover", json={"to_agency_id": OKUSAWA}, headers=STRANGER),
        client.post(f"/persons/{s.person}/statutory-sharing", json={"agency_ids": [OKUSAWA]}, headers=STRANGER),
        client.post("/households", json={"person_ids": [theirs, s.person], "situation": "8050"}, headers=STRANGER),
    ]
    for attempt in attempts:
        assert_denied(await attempt)
    # and nothing was unlocked: details, summary and notes stay closed
    assert_denied(await client.get(f"/persons/{s.person}", headers=STRANGER))
    assert_denied(await client.get(f"/consultations/{s.consultation}", headers=STRANGER))
    assert_denied(await client.get(f"/cases/{s.case}/timeline", headers=STRANGER))
    assert_denied(await client.get(f"/persons/{s.person}/consents", headers=STRANGER))


async def test_a_consent_an_agency_recorded_naming_itself_grants_it_nothing(running: Running) -> None:
    """Consents written through the old hole are in the read model: the read rule ignores them."""
    s = await seed(running)
    async with running.runtime.engine.begin() as conn:
        await conn.execute(
            insert(consents).values(
                consent_id="consent-self-granted",
                person_id=s.person,
                scope="named_agencies",
                district_id=None,
                agency_ids=[OKUSAWA],
                given_at=running.intake.clock(),
                recorded_by_agency=OKUSAWA,
            )
        )
    assert_denied(await running.client.get(f"/persons/{s.person}", headers=STRANGER))


async def test_a_serving_agency_may_still_open_a_case_with_another_lead_and_hand_it_over(running: Running) -> None:
    s = await seed(running)
    r = await running.client.post(
        "/cases", json={"person_id": s.person, "lead_agency_id": OKUSAWA, "approach": "both"}, headers=OWN
    )
    assert r.status_code == 201, r.text
    r = await running.client.post(f"/cases/{s.case}/handover", json={"to_agency_id": OKUSAWA}, headers=OWN)
    assert r.status_code == 200, r.text
    lead = await running.client.get(f"/persons/{s.person}", headers=STRANGER)
    assert lead.json()["access_basis"] == "lead_agency"


async def test_staff_record_consultations_only_at_their_own_agencys_window(running: Running) -> None:
    r = await running.client.post("/consultations", json=CONSULTATION | {"window_id": KARASUYAMA}, headers=OWN)
    assert_denied(r)
    assert (await running.client.post("/consultations", json=CONSULTATION, headers=OWN)).status_code == 201
    admin = await running.client.post(
        "/consultations", json=CONSULTATION | {"window_id": KARASUYAMA}, headers=token(Role.ADMIN)
    )
    assert admin.status_code == 201


async def test_staff_cannot_file_a_consultation_about_a_person_their_agency_does_not_serve(running: Running) -> None:
    s = await seed(running)
    r = await running.client.post(
        "/consultations", json=CONSULTATION | {"window_id": OKUSAWA, "person_id": s.person}, headers=STRANGER
    )
    assert_denied(r)


async def test_an_agency_system_acts_only_for_its_own_agency(running: Running) -> None:
    s = await seed(running)
    own_system = token(Role.AGENCY_SYSTEM, agency=CSC, staff="system")
    r = await running.client.post("/consultations", json=CONSULTATION | {"window_id": KARASUYAMA}, headers=own_system)
    assert_denied(r)
    contact = {"kind": "call", "at": "2026-05-02T10:00:00+09:00", "agency_id": OKUSAWA}
    assert_denied(await running.client.post(f"/cases/{s.case}/contacts", json=contact, headers=own_system))
    del contact["agency_id"]
    assert (await running.client.post(f"/cases/{s.case}/contacts", json=contact, headers=own_system)).status_code == 201
    other_system = token(Role.AGENCY_SYSTEM, agency="specialist.hospital", staff="system")
    assert_denied(await running.client.post(f"/cases/{s.case}/contacts", json=contact, headers=other_system))


async def test_staff_list_only_their_own_and_served_consultations_and_cases(running_on: Running) -> None:
    running = running_on
    s = await seed(running)
    r = await running.client.post(
        "/consultations",
        json=CONSULTATION | {"window_id": OKUSAWA, "categories": ["poverty"], "summary": None},
        headers=STRANGER,
    )
    theirs = r.json()["id"]
    mine = [c["consultation_id"] for c in (await running.client.get("/consultations", headers=OWN)).json()]
    assert mine == [s.consultation]
    seen = [c["consultation_id"] for c in (await running.client.get("/consultations", headers=STRANGER)).json()]
    assert seen == [theirs]
    assert (await running.client.get("/consultations/counts", headers=STRANGER)).json()["total"] == 1
    assert (await running.client.get("/cases", headers=STRANGER)).json() == []
    assert [c["case_id"] for c in (await running.client.get("/cases", headers=OWN)).json()] == [s.case]
    everything = (await running.client.get("/consultations", headers=token(Role.ADMIN))).json()
    assert {c["consultation_id"] for c in everything} == {s.consultation, theirs}


async def test_auditors_see_no_personal_text_and_every_read_of_it_is_logged(running: Running) -> None:
    s = await seed(running)
    auditor = token(Role.AUDITOR, agency="setagaya.branch_office", staff="audit-1")
    r = await running.client.post("/consultations", json=CONSULTATION, headers=OWN)  # without a person
    anonymous = r.json()["id"]
    for cid in (s.consultation, anonymous):
        got = await running.client.get(f"/consultations/{cid}", headers=auditor)
        assert got.status_code == 200
        assert got.json()["summary"] is None
    assert (await running.client.get(f"/consultations/{anonymous}", headers=OWN)).json()[
        "summary"
    ] == "夫からの暴力の相談"
    assert_denied(await running.client.get(f"/consultations/{anonymous}", headers=STRANGER))
    assert_denied(await running.client.get(f"/persons/{s.person}", headers=auditor))
    assert (await running.client.get(f"/persons/{s.person}/consents", headers=OWN)).status_code == 200
    assert_denied(await running.client.get(f"/persons/{s.person}/consents", headers=STRANGER))
    log = (await running.client.get("/access-log", headers=auditor)).json()
    entries = {(e["person_id"], e["what"], e["agency"], e["granted"]) for e in log}
    assert (s.person, "consultation.summary", "setagaya.branch_office", False) in entries
    assert (anonymous, "consultation.summary", "setagaya.branch_office", False) in entries
    assert (anonymous, "consultation.summary", CSC, True) in entries
    assert (anonymous, "consultation.summary", OKUSAWA, False) in entries
    assert (s.person, "person.consents", CSC, True) in entries
    assert (s.person, "person.consents", OKUSAWA, False) in entries
