"""A referral's whole loop over HTTP on the in-memory broker, with its invalid transitions,
agency scoping and validation."""

from __future__ import annotations

from typing import Any

from tsunagu_events.contracts.referral import (
    ReferralAccepted,
    ReferralCompleted,
    ReferralOutcome,
    ReferralRequested,
)
from tsunagu_platform.auth import Role

from .conftest import IKEJIRI_CC, IKEJIRI_CSC, POVERTY, Harness, new_person, token
from .contract_check import assert_matches_contract


def body(person_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "person_id": person_id,
        "to_agency_id": POVERTY,
        "categories": ["poverty"],
        "due_on": "2026-04-10",
        "case_id": "case-1",
        "handover_lead": True,
        **extra,
    }


async def referred(harness: Harness, **extra: Any) -> str:
    person = new_person()
    await harness.register(person)
    await harness.open_case(person, IKEJIRI_CC, case_id="case-1")
    await harness.give_consent(person)
    response = await harness.client.post("/referrals", json=body(person, **extra), headers=token(IKEJIRI_CC))
    assert response.status_code == 201, response.text
    return str(response.json()["referral_id"])


async def test_full_loop_publishes_contract_shaped_events(harness: Harness) -> None:
    referral_id = await referred(harness)
    inbox = await harness.client.get("/inbox/referrals", headers=token(POVERTY))
    assert [r["referral_id"] for r in inbox.json()] == [referral_id]
    accepted = await harness.client.post(f"/referrals/{referral_id}/accept", headers=token(POVERTY))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state_label_ja"] == "受諾"
    completed = await harness.client.post(
        f"/referrals/{referral_id}/complete",
        json={"outcome": "got_help", "feedback": "初回面談を実施しました"},
        headers=token(POVERTY),
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["outcome_label_ja"] == "支援につながった"
    detail = await harness.client.get(f"/referrals/{referral_id}", headers=token(IKEJIRI_CC))
    assert detail.json()["feedback"] == "初回面談を実施しました"

    for event_type in (ReferralRequested.event_type, ReferralAccepted.event_type, ReferralCompleted.event_type):
        [envelope] = await harness.events_of(event_type, 1)
        assert envelope.streamid == referral_id
        assert envelope.actoragency in (IKEJIRI_CC, POVERTY)
        assert_matches_contract(envelope)
    [accepted_event] = harness.payloads(ReferralAccepted.event_type)
    assert isinstance(accepted_event, ReferralAccepted)
    assert accepted_event.handover_lead is True
    assert accepted_event.case_id == "case-1"
    [completed_event] = harness.payloads(ReferralCompleted.event_type)
    assert isinstance(completed_event, ReferralCompleted)
    assert completed_event.outcome is ReferralOutcome.GOT_HELP
    assert completed_event.feedback is not None
    assert "面談" not in completed_event.feedback.ct


async def test_accepting_twice_is_a_409_with_the_current_state(harness: Harness) -> None:
    referral_id = await referred(harness)
    assert (await harness.client.post(f"/referrals/{referral_id}/accept", headers=token(POVERTY))).status_code == 200
    again = await harness.client.post(f"/referrals/{referral_id}/accept", headers=token(POVERTY))
    assert again.status_code == 409
    problem = again.json()
    assert problem["current_state"] == "accepted"
    assert problem["version"] == 2
    assert problem["reason"] == "invalid_transition"
    assert "受諾" in problem["title"]


async def test_completing_a_declined_referral_is_a_409(harness: Harness) -> None:
    referral_id = await referred(harness)
    declined = await harness.client.post(
        f"/referrals/{referral_id}/decline", json={"reason_code": "no_capacity"}, headers=token(POVERTY)
    )
    assert declined.status_code == 200
    assert declined.json()["decline_reason"] == "no_capacity"
    complete = await harness.client.post(
        f"/referrals/{referral_id}/complete", json={"outcome": "got_help"}, headers=token(POVERTY)
    )
    assert complete.status_code == 409
    assert complete.json()["current_state"] == "declined"


async def test_agencies_see_only_their_referrals(harness: Harness) -> None:
    referral_id = await referred(harness)
    assert (await harness.client.get(f"/referrals/{referral_id}", headers=token(IKEJIRI_CSC))).status_code == 404
    assert (await harness.client.get("/referrals", headers=token(IKEJIRI_CSC))).json() == []
    sent = await harness.client.get("/referrals?box=sent", headers=token(IKEJIRI_CC))
    assert [r["referral_id"] for r in sent.json()] == [referral_id]
    auditor = await harness.client.get("/referrals", headers=token("setagaya.branch_office", Role.AUDITOR))
    assert [r["referral_id"] for r in auditor.json()] == [referral_id]
    # Only the receiving agency answers; only the referrer withdraws; auditors change nothing.
    assert (await harness.client.post(f"/referrals/{referral_id}/accept", headers=token(IKEJIRI_CC))).status_code == 403
    assert (await harness.client.post(f"/referrals/{referral_id}/withdraw", headers=token(POVERTY))).status_code == 403
    withdrawn = await harness.client.post(f"/referrals/{referral_id}/withdraw", headers=token(IKEJIRI_CC))
    assert withdrawn.json()["state"] == "withdrawn"


async def test_unknown_agencies_and_missing_tokens(harness: Harness) -> None:
    person = new_person()
    await harness.register(person)
    unknown = await harness.client.post(
        "/referrals", json=body(person, to_agency_id="nowhere.window"), headers=token(IKEJIRI_CC)
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "body.to_agency_id"
    assert (await harness.client.post("/referrals", json=body(person))).status_code == 401
    assert (await harness.client.get("/referrals/referral-nope", headers=token(IKEJIRI_CC))).status_code == 404


async def test_a_retried_request_with_the_same_id_does_not_create_two(harness: Harness) -> None:
    person = new_person()
    await harness.register(person)
    await harness.open_case(person, IKEJIRI_CC, case_id="case-1")
    await harness.give_consent(person)
    rid = "referral-00000000-0000-4000-8000-000000000001"
    first = await harness.client.post("/referrals", json=body(person, referral_id=rid), headers=token(IKEJIRI_CC))
    again = await harness.client.post("/referrals", json=body(person, referral_id=rid), headers=token(IKEJIRI_CC))
    assert first.status_code == 201
    assert again.status_code == 409
