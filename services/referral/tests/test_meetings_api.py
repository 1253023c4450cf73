"""Meetings over HTTP: a four-party develop_resource decision and a multi-layered SupportPlanDecided
are published on tsunagu.referral.events in their contract shapes (resources and intake consume
them); a support meeting is the statutory basis of a referral without consent."""

from __future__ import annotations

from tsunagu_events.contracts.referral import (
    DecisionKind,
    MeetingDecisionMade,
    ReferralRequested,
    SupportDecided,
    SupportPlanDecided,
)
from tsunagu_platform.auth import Role

from .conftest import IKEJIRI_CC, IKEJIRI_CSC, POVERTY, Harness, new_person, token
from .contract_check import assert_matches_contract

IKEJIRI_WC = "ikejiri.welfare_council_office"
IKEJIRI_CH = "ikejiri.childrens_center"


async def test_four_party_develop_resource_decision_is_published_for_resources(harness: Harness) -> None:
    created = await harness.client.post(
        "/meetings",
        json={"kind": "four_party", "district_id": "ikejiri", "scheduled_for": "2026-04-15T10:00:00+09:00"},
        headers=token(IKEJIRI_CC),
    )
    assert created.status_code == 201, created.text
    meeting = created.json()
    assert meeting["kind_label_ja"] == "四者連携会議"
    assert sorted(meeting["member_agency_ids"]) == sorted([IKEJIRI_CC, IKEJIRI_CSC, IKEJIRI_WC, IKEJIRI_CH])
    mid = meeting["meeting_id"]
    outsider = await harness.client.post(
        f"/meetings/{mid}/agenda-items",
        json={"kind": "district_issue", "title": "x", "raised_by_agency_id": POVERTY},
        headers=token(IKEJIRI_CC),
    )
    assert outsider.status_code == 422
    item = await harness.client.post(
        f"/meetings/{mid}/agenda-items",
        json={
            "kind": "district_issue",
            "title": "日中の居場所がない若者",
            "categories": ["withdrawal"],
            "gap_need": True,
        },
        headers=token(IKEJIRI_CH),
    )
    assert item.status_code == 201, item.text
    item_id = item.json()["created_id"]
    early = await harness.client.post(
        f"/meetings/{mid}/decisions",
        json={"kind": "develop_resource", "title": "居場所づくり"},
        headers=token(IKEJIRI_CC),
    )
    assert early.status_code == 409
    assert early.json()["current_state"] == "scheduled"
    held = await harness.client.post(
        f"/meetings/{mid}/held",
        json={"attendee_agency_ids": [IKEJIRI_CC, IKEJIRI_CSC, IKEJIRI_WC, IKEJIRI_CH], "minutes_summary": "議題1件"},
        headers=token(IKEJIRI_CC),
    )
    assert held.status_code == 200, held.text
    decided = await harness.client.post(
        f"/meetings/{mid}/decisions",
        json={"kind": "develop_resource", "title": "若者の居場所づくり", "item_id": item_id},
        headers=token(IKEJIRI_WC),
    )
    assert decided.status_code == 201, decided.text
    escalated = await harness.client.post(
        f"/meetings/{mid}/decisions",
        json={"kind": "escalate_to_branch_office", "title": "区全体の課題として提起"},
        headers=token(IKEJIRI_CC),
    )
    assert escalated.status_code == 201
    action = await harness.client.post(
        f"/meetings/{mid}/action-items",
        json={"agency_id": IKEJIRI_WC, "title": "候補地の調査", "due_on": "2026-05-31"},
        headers=token(IKEJIRI_CC),
    )
    action_id = action.json()["created_id"]
    inbox = await harness.client.get("/inbox/action-items", headers=token(IKEJIRI_WC))
    assert [a["action_id"] for a in inbox.json()] == [action_id]
    done = await harness.client.post(f"/meetings/{mid}/action-items/{action_id}/done", headers=token(IKEJIRI_WC))
    assert done.status_code == 200
    assert (await harness.client.get("/inbox/action-items", headers=token(IKEJIRI_WC))).json() == []
    twice = await harness.client.post(f"/meetings/{mid}/action-items/{action_id}/done", headers=token(IKEJIRI_WC))
    assert twice.status_code == 409

    decisions = await harness.events_of(MeetingDecisionMade.event_type, 2)
    for envelope in decisions:
        assert_matches_contract(envelope)
    develop, escalate = (MeetingDecisionMade.model_validate(e.data) for e in decisions)
    assert develop.kind is DecisionKind.DEVELOP_RESOURCE
    assert develop.district_id == "ikejiri"
    assert develop.gap_need is True
    assert develop.categories == ["withdrawal"]
    assert escalate.branch_office_id == "setagaya.branch_office"

    assert (await harness.client.get(f"/meetings/{mid}", headers=token(POVERTY))).status_code == 404
    listed = await harness.client.get("/meetings", headers=token(IKEJIRI_CSC))
    assert [m["meeting_id"] for m in listed.json()] == [mid]


async def test_multi_layered_meeting_decides_a_plan_intake_can_show(harness: Harness) -> None:
    person = new_person()
    await harness.register(person)
    members = [IKEJIRI_CC, POVERTY]
    created = await harness.client.post(
        "/meetings",
        json={"kind": "multi_layered", "scheduled_for": "2026-04-20T14:00:00+09:00", "member_agency_ids": members},
        headers=token(IKEJIRI_CC),
    )
    mid = created.json()["meeting_id"]
    hold = {"attendee_agency_ids": members, "person_ids": [person], "confidentiality_acknowledged": True}
    refused = await harness.client.post(f"/meetings/{mid}/held", json=hold, headers=token(IKEJIRI_CC))
    assert refused.status_code == 409
    assert refused.json()["reason"] == "consent_required"
    await harness.give_consent(person)
    assert (await harness.client.post(f"/meetings/{mid}/held", json=hold, headers=token(IKEJIRI_CC))).status_code == 200
    plan = {"case_id": "case-9", "person_id": person, "goals": ["週1回外出する"], "review_due": "2026-07-01"}
    revise_first = await harness.client.post(
        f"/meetings/{mid}/support-plan", json={**plan, "action": "revise"}, headers=token(IKEJIRI_CC)
    )
    assert revise_first.status_code == 409
    adopted = await harness.client.post(
        f"/meetings/{mid}/support-plan", json={**plan, "action": "adopt"}, headers=token(IKEJIRI_CC)
    )
    assert adopted.status_code == 200, adopted.text
    revised = await harness.client.post(
        f"/meetings/{mid}/support-plan", json={**plan, "action": "revise"}, headers=token(POVERTY)
    )
    assert revised.status_code == 200
    started = await harness.client.post(
        f"/meetings/{mid}/support-decision",
        json={"case_id": "case-9", "person_id": person, "decision": "start"},
        headers=token(IKEJIRI_CC),
    )
    assert started.status_code == 200

    plans = await harness.events_of(SupportPlanDecided.event_type, 2)
    for envelope in plans:
        assert_matches_contract(envelope)
    first, second = (SupportPlanDecided.model_validate(e.data) for e in plans)
    assert (first.revision, second.revision) == (False, True)
    assert first.case_id == "case-9"
    assert first.person_id == person
    assert len(first.goals) == 1
    assert "外出" not in first.goals[0].ct
    [support] = await harness.events_of(SupportDecided.event_type, 1)
    assert_matches_contract(support)


async def test_support_meeting_is_the_statutory_basis_of_a_referral_without_consent(harness: Harness) -> None:
    person = new_person()
    await harness.register(person)
    members = [IKEJIRI_CC, POVERTY]
    created = await harness.client.post(
        "/meetings",
        json={"kind": "support_meeting", "scheduled_for": "2026-04-10T10:00:00+09:00", "member_agency_ids": members},
        headers=token(IKEJIRI_CC),
    )
    mid = created.json()["meeting_id"]
    unacknowledged = await harness.client.post(
        f"/meetings/{mid}/held",
        json={"attendee_agency_ids": members, "person_ids": [person]},
        headers=token(IKEJIRI_CC),
    )
    assert unacknowledged.status_code == 422
    held = await harness.client.post(
        f"/meetings/{mid}/held",
        json={"attendee_agency_ids": members, "person_ids": [person], "confidentiality_acknowledged": True},
        headers=token(IKEJIRI_CC),
    )
    assert held.json()["legal_basis"] == "support_meeting_statutory"
    referral = {
        "person_id": person,
        "to_agency_id": POVERTY,
        "categories": ["poverty"],
        "due_on": "2026-04-10",
        "legal_basis": "support_meeting_statutory",
        "meeting_id": mid,
    }
    made = await harness.client.post("/referrals", json=referral, headers=token(IKEJIRI_CC))
    assert made.status_code == 201, made.text
    assert made.json()["legal_basis_label_ja"].startswith("支援会議")
    [requested] = await harness.events_of(ReferralRequested.event_type, 1)
    payload = ReferralRequested.model_validate(requested.data)
    assert payload.meeting_id == mid
    assert payload.consent_id is None
    not_a_support_meeting = await harness.client.post(
        "/referrals", json={**referral, "meeting_id": "meeting-unknown"}, headers=token(IKEJIRI_CC)
    )
    assert not_a_support_meeting.status_code == 422
    auditor = token("setagaya.branch_office", Role.AUDITOR)
    assert (await harness.client.get(f"/meetings/{mid}", headers=auditor)).status_code == 200
    assert (
        await harness.client.post(
            f"/meetings/{mid}/decisions", json={"kind": "keep_watching", "title": "t"}, headers=auditor
        )
    ).status_code == 403
