"""The consent gate, driven by intake's consent events arriving before or after the referral command."""

from __future__ import annotations

from typing import Any

from tsunagu_events.contracts.referral import ReferralRequested

from .conftest import IKEJIRI_CC, POVERTY, Harness, new_person, token


def referral_body(person_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "person_id": person_id,
        "to_agency_id": POVERTY,
        "categories": ["poverty", "work"],
        "due_on": "2026-04-10",
        "reason": "家賃を3か月滞納している",
        **extra,
    }


async def test_referral_before_consent_is_refused_then_succeeds_once_consent_is_consumed(harness: Harness) -> None:
    person = new_person()
    await harness.register(person)
    refused = await harness.client.post("/referrals", json=referral_body(person), headers=token(IKEJIRI_CC))
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["reason"] == "consent_required"
    assert "同意" in problem["title"]
    assert "consented" in problem["title"]

    consent_id = await harness.give_consent(person)
    accepted = await harness.client.post("/referrals", json=referral_body(person), headers=token(IKEJIRI_CC))
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["state"] == "requested"
    requested = await harness.events_of(ReferralRequested.event_type, 1)
    payload = ReferralRequested.model_validate(requested[0].data)
    assert payload.consent_id == consent_id
    assert payload.reason is not None
    assert "家賃" not in payload.reason.ct


async def test_consent_given_first_lets_the_referral_through(harness: Harness) -> None:
    person = new_person()
    await harness.register(person)
    await harness.give_consent(person, agency_ids=[POVERTY])
    response = await harness.client.post("/referrals", json=referral_body(person), headers=token(IKEJIRI_CC))
    assert response.status_code == 201, response.text
    detail = await harness.client.get(f"/referrals/{response.json()['referral_id']}", headers=token(POVERTY))
    assert detail.json()["reason"] == "家賃を3か月滞納している"


async def test_consent_for_other_agencies_does_not_cover_this_one(harness: Harness) -> None:
    person = new_person()
    await harness.register(person)
    await harness.give_consent(person, agency_ids=["specialist.hospital"])
    response = await harness.client.post("/referrals", json=referral_body(person), headers=token(IKEJIRI_CC))
    assert response.status_code == 409
    assert response.json()["reason"] == "consent_required"


async def test_withdrawn_consent_refuses_again(harness: Harness) -> None:
    person = new_person()
    await harness.register(person)
    consent_id = await harness.give_consent(person)
    await harness.withdraw_consent(person, consent_id)
    response = await harness.client.post("/referrals", json=referral_body(person), headers=token(IKEJIRI_CC))
    assert response.status_code == 409
    status = await harness.client.get(f"/persons/{person}/consent", headers=token(IKEJIRI_CC))
    assert status.json()["has_consent"] is False


async def test_erased_person_cannot_be_referred_and_their_keys_are_gone(harness: Harness) -> None:
    person = new_person()
    await harness.register(person)
    await harness.give_consent(person)
    created = await harness.client.post("/referrals", json=referral_body(person), headers=token(IKEJIRI_CC))
    referral_id = created.json()["referral_id"]
    await harness.erase(person)
    again = await harness.client.post("/referrals", json=referral_body(person), headers=token(IKEJIRI_CC))
    assert again.status_code == 409
    assert again.json()["reason"] == "person_erased"
    detail = await harness.client.get(f"/referrals/{referral_id}", headers=token(IKEJIRI_CC))
    assert detail.status_code == 200
    assert detail.json()["reason"] is None
    assert await harness.app.state.runtime.keys.is_erased(person)
