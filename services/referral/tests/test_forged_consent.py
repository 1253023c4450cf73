"""Referral's consent gate opens only for consent events intake's hash chain vouches for.

A ConsentGiven with made-up hashes, written straight to tsunagu.intake.events, opened the gate (409 → 201)
although intake held no such consent. The consent view now applies an event only when its prevhash is the
chain hash of the last event it applied of that person's stream; a break is dead-lettered (`chain_break`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from tsunagu_events import EventEnvelope
from tsunagu_events.contracts.intake import ConsentGiven, ConsentScope
from tsunagu_events.registry import schema_id
from tsunagu_events.topics import dlq_topic, events_topic
from tsunagu_platform.kafka import OutgoingMessage

from .conftest import IKEJIRI_CC, TENANT, Harness, new_person, token
from .test_referral_consent_gate import referral_body


def forged_consent(person_id: str, version: int, prevhash: str) -> EventEnvelope:
    payload = ConsentGiven(
        consent_id=f"consent-{uuid.uuid4()}",
        person_id=person_id,
        scope=ConsentScope.REFERRAL,
        agency_ids=[],
        given_at=datetime.now(UTC),
        recorded_by_agency=IKEJIRI_CC,
    )
    return EventEnvelope(
        id=str(uuid.uuid4()),
        source=f"/tsunagu/{TENANT}/intake",
        type=payload.event_type,
        time=datetime.now(UTC),
        subject=person_id,
        dataschema=schema_id(payload.event_type, payload.version),
        tenant=TENANT,
        streamid=person_id,
        streamversion=version,
        correlationid=str(uuid.uuid4()),
        dataversion=payload.version,
        prevhash=prevhash,
        chainhash="f" * 64,
        data=payload.to_data(),
    )


def dead_letters_of(harness: Harness) -> list[OutgoingMessage]:
    runtime = harness.app.state.runtime
    sent: list[OutgoingMessage] = []
    original = runtime.publisher.publish

    async def publish(messages: Sequence[OutgoingMessage]) -> None:
        sent.extend(m for m in messages if m.topic == dlq_topic(events_topic("intake")))
        await original(messages)

    runtime.publisher.publish = publish
    return sent


async def test_a_forged_consent_with_made_up_hashes_does_not_open_the_consent_gate(harness: Harness) -> None:
    dead = dead_letters_of(harness)
    person = new_person()
    await harness.register(person, IKEJIRI_CC)  # v1: ikejiri's community center serves the person
    await harness.publish_intake(forged_consent(person, 2, "e" * 64))  # must link to v1's chain hash
    refused = await harness.client.post("/referrals", json=referral_body(person), headers=token(IKEJIRI_CC))
    assert refused.status_code == 409, refused.text
    assert refused.json()["reason"] == "consent_required"
    assert [dict(m.headers)["dlq_reason"] for m in dead] == [b"chain_break"]


async def test_a_forged_consent_on_a_known_stream_is_refused_and_the_genuine_chain_goes_on(harness: Harness) -> None:
    dead = dead_letters_of(harness)
    person = new_person()
    await harness.register(person, IKEJIRI_CC)  # v1
    consent_id = await harness.give_consent(person, agency_ids=["specialist.hospital"])  # v2, not for POVERTY
    await harness.publish_intake(forged_consent(person, 3, "e" * 64))
    refused = await harness.client.post("/referrals", json=referral_body(person), headers=token(IKEJIRI_CC))
    assert refused.status_code == 409, refused.text
    assert [dict(m.headers)["dlq_reason"] for m in dead] == [b"chain_break"]
    # intake's own next event links to v2 and is applied: the stream was not stopped by the forgery
    await harness.withdraw_consent(person, consent_id)
    await harness.give_consent(person)
    accepted = await harness.client.post("/referrals", json=referral_body(person), headers=token(IKEJIRI_CC))
    assert accepted.status_code == 201, accepted.text
