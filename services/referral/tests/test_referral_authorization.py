"""Referral authorization by agency (issue 14, section 1): on writes as on reads, an agency acts
only on what it already serves, no command makes it a party, auditors read no personal text and
every read of personal text is in the access log, granted or denied."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from tsunagu_platform.auth import Role
from tsunagu_referral import tables

from .conftest import IKEJIRI_CC, IKEJIRI_CSC, POVERTY, Harness, new_person, token

OKUSAWA_CC = "okusawa.community_center"
AUDITOR = token("setagaya.branch_office", Role.AUDITOR)


def referral_body(person_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "person_id": person_id,
        "to_agency_id": POVERTY,
        "categories": ["poverty"],
        "due_on": "2026-04-30",
        **extra,
    }


async def ikejiri_person(harness: Harness, consent_for: list[str] | None = None) -> str:
    """A person registered at ikejiri's comprehensive support center, with a referral consent."""
    person = new_person()
    await harness.register(person, IKEJIRI_CSC)
    await harness.give_consent(person, agency_ids=consent_for)
    return person


async def access_rows(harness: Harness) -> list[Any]:
    access_log = tables.access_log
    async with harness.app.state.runtime.reader.connect() as conn:
        return list((await conn.execute(select(access_log).order_by(access_log.c.id))).all())


async def test_staff_of_another_agency_cannot_refer_a_person_it_does_not_serve(harness: Harness) -> None:
    person = await ikejiri_person(harness)
    refused = await harness.client.post("/referrals", json=referral_body(person), headers=token(OKUSAWA_CC))
    assert refused.status_code == 403
    assert "(" in refused.json()["title"]
    assert "serve" in refused.json()["title"]
    served = await harness.client.post("/referrals", json=referral_body(person), headers=token(IKEJIRI_CSC))
    assert served.status_code == 201, served.text


async def test_naming_itself_as_receiver_does_not_let_an_agency_refer_a_person(harness: Harness) -> None:
    person = await ikejiri_person(harness, consent_for=[IKEJIRI_CSC])
    body = referral_body(person, to_agency_id=IKEJIRI_CSC)
    assert (await harness.client.post("/referrals", json=body, headers=token(OKUSAWA_CC))).status_code == 403


async def test_the_lead_agency_of_an_open_case_serves_the_person(harness: Harness) -> None:
    person = await ikejiri_person(harness)
    case_id = await harness.open_case(person, OKUSAWA_CC)
    made = await harness.client.post(
        "/referrals", json=referral_body(person, case_id=case_id, handover_lead=True), headers=token(OKUSAWA_CC)
    )
    assert made.status_code == 201, made.text


async def test_only_the_lead_agency_can_hand_a_case_over_by_referral(harness: Harness) -> None:
    person = await ikejiri_person(harness)
    case_id = await harness.open_case(person, IKEJIRI_CC)
    body = referral_body(person, case_id=case_id, handover_lead=True)
    refused = await harness.client.post("/referrals", json=body, headers=token(IKEJIRI_CSC))
    assert refused.status_code == 403
    other_case = await harness.open_case(new_person(), IKEJIRI_CSC)
    hijack = referral_body(person, case_id=other_case, handover_lead=True)
    assert (await harness.client.post("/referrals", json=hijack, headers=token(IKEJIRI_CSC))).status_code == 403


async def test_an_agency_system_token_refers_only_in_its_own_agencys_name(harness: Harness) -> None:
    person = await ikejiri_person(harness)
    system = token(OKUSAWA_CC, Role.AGENCY_SYSTEM)
    body = referral_body(person, from_agency_id=IKEJIRI_CSC)
    assert (await harness.client.post("/referrals", json=body, headers=system)).status_code == 403
    assert (await harness.client.post("/referrals", json=referral_body(person), headers=system)).status_code == 403


async def test_auditors_never_read_referral_reasons_or_feedback(harness: Harness) -> None:
    person = await ikejiri_person(harness)
    made = await harness.client.post(
        "/referrals", json=referral_body(person, reason="家賃を3か月滞納している"), headers=token(IKEJIRI_CSC)
    )
    referral_id = made.json()["referral_id"]
    await harness.client.post(f"/referrals/{referral_id}/accept", headers=token(POVERTY))
    await harness.client.post(
        f"/referrals/{referral_id}/complete",
        json={"outcome": "got_help", "feedback": "生活保護の申請に同行した"},
        headers=token(POVERTY),
    )
    audited = await harness.client.get(f"/referrals/{referral_id}", headers=AUDITOR)
    assert audited.status_code == 200
    assert audited.json()["reason"] is None
    assert audited.json()["feedback"] is None
    assert "滞納" not in audited.text
    assert "同行" not in audited.text
    party = await harness.client.get(f"/referrals/{referral_id}", headers=token(IKEJIRI_CSC))
    assert party.json()["reason"] == "家賃を3か月滞納している"


async def test_every_read_of_a_referral_reason_is_logged_granted_or_denied(harness: Harness) -> None:
    person = await ikejiri_person(harness)
    made = await harness.client.post(
        "/referrals", json=referral_body(person, reason="家計の相談"), headers=token(IKEJIRI_CSC)
    )
    referral_id = made.json()["referral_id"]
    assert (await harness.client.get(f"/referrals/{referral_id}", headers=token(POVERTY))).status_code == 200
    assert (await harness.client.get(f"/referrals/{referral_id}", headers=token(OKUSAWA_CC))).status_code == 404
    assert (await harness.client.get(f"/referrals/{referral_id}", headers=AUDITOR)).status_code == 200
    rows = [(r.agency, r.person_id, r.subject_id, r.granted) for r in await access_rows(harness)]
    assert rows == [
        (POVERTY, person, referral_id, True),
        (OKUSAWA_CC, person, referral_id, False),
        ("setagaya.branch_office", person, referral_id, False),
    ]


async def test_another_agency_cannot_read_a_persons_consents(harness: Harness) -> None:
    person = await ikejiri_person(harness)
    assert (await harness.client.get(f"/persons/{person}/consent", headers=token(OKUSAWA_CC))).status_code == 403
    served = await harness.client.get(f"/persons/{person}/consent", headers=token(IKEJIRI_CSC))
    assert served.json()["has_consent"] is True
    assert [r.granted for r in await access_rows(harness)] == [False, True]


# -- meetings -------------------------------------------------------------------------------


async def schedule(harness: Harness, kind: str, members: list[str], caller: str, **extra: Any) -> str:
    created = await harness.client.post(
        "/meetings",
        json={"kind": kind, "scheduled_for": "2026-04-20T10:00:00+09:00", "member_agency_ids": members, **extra},
        headers=token(caller),
    )
    assert created.status_code == 201, created.text
    return str(created.json()["meeting_id"])


async def test_an_agency_cannot_bring_a_person_it_does_not_serve_to_its_own_support_meeting(harness: Harness) -> None:
    person = await ikejiri_person(harness)
    mid = await schedule(harness, "support_meeting", [OKUSAWA_CC, POVERTY], OKUSAWA_CC)
    hold = {"attendee_agency_ids": [OKUSAWA_CC], "person_ids": [person], "confidentiality_acknowledged": True}
    assert (await harness.client.post(f"/meetings/{mid}/held", json=hold, headers=token(OKUSAWA_CC))).status_code == 403
    item = {"kind": "case", "title": "見守りの相談", "person_id": person}
    added = await harness.client.post(f"/meetings/{mid}/agenda-items", json=item, headers=token(OKUSAWA_CC))
    assert added.status_code == 403
    statutory = referral_body(person, legal_basis="support_meeting_statutory", meeting_id=mid)
    assert (await harness.client.post("/referrals", json=statutory, headers=token(OKUSAWA_CC))).status_code == 403


async def test_a_non_member_cannot_change_or_read_a_meeting(harness: Harness) -> None:
    mid = await schedule(harness, "multi_layered", [IKEJIRI_CC, POVERTY], IKEJIRI_CC)
    item = {"kind": "district_issue", "title": "居場所"}
    posted = await harness.client.post(f"/meetings/{mid}/agenda-items", json=item, headers=token(OKUSAWA_CC))
    assert posted.status_code == 404
    assert (await harness.client.get(f"/meetings/{mid}", headers=token(OKUSAWA_CC))).status_code == 404
    hold = {"attendee_agency_ids": [IKEJIRI_CC, OKUSAWA_CC]}
    assert (await harness.client.post(f"/meetings/{mid}/held", json=hold, headers=token(OKUSAWA_CC))).status_code == 404


async def test_action_items_go_only_to_member_agencies(harness: Harness) -> None:
    mid = await schedule(harness, "multi_layered", [IKEJIRI_CC, POVERTY], IKEJIRI_CC)
    action = {"agency_id": OKUSAWA_CC, "title": "訪問の調整", "due_on": "2026-05-31"}
    assigned = await harness.client.post(f"/meetings/{mid}/action-items", json=action, headers=token(IKEJIRI_CC))
    assert assigned.status_code == 422
    assert (await harness.client.get("/inbox/action-items", headers=token(OKUSAWA_CC))).json() == []


async def test_members_read_minutes_and_titles_auditors_do_not_and_each_read_is_logged(harness: Harness) -> None:
    person = new_person()
    await harness.register(person, IKEJIRI_CC)
    mid = await schedule(harness, "support_meeting", [IKEJIRI_CC, POVERTY], IKEJIRI_CC)
    item = {"kind": "case", "title": "山田さんの見守り", "person_id": person}
    assert (
        await harness.client.post(f"/meetings/{mid}/agenda-items", json=item, headers=token(IKEJIRI_CC))
    ).status_code == 201
    hold = {"attendee_agency_ids": [IKEJIRI_CC, POVERTY], "confidentiality_acknowledged": True,
            "minutes_summary": "次回までに訪問する"}  # fmt: skip
    assert (await harness.client.post(f"/meetings/{mid}/held", json=hold, headers=token(IKEJIRI_CC))).status_code == 200
    member = (await harness.client.get(f"/meetings/{mid}", headers=token(POVERTY))).json()
    assert member["minutes_summary"] == "次回までに訪問する"
    assert [i["title"] for i in member["agenda"]] == ["山田さんの見守り"]
    audited = await harness.client.get(f"/meetings/{mid}", headers=AUDITOR)
    assert audited.status_code == 200
    assert audited.json()["minutes_summary"] is None
    assert "山田" not in audited.text
    assert "訪問" not in audited.text
    logged = [(r.agency, r.person_id, r.what, r.granted) for r in await access_rows(harness)]
    assert (POVERTY, None, "meeting_text", True) in logged
    assert (POVERTY, person, "meeting_text", True) in logged
    assert ("setagaya.branch_office", None, "meeting_text", False) in logged
