"""The resources service as a real process on the real broker, on SQLite and PostgreSQL.

A four-party meeting decision published on the referral topic (binary CloudEvents,
as the referral service's relay publishes it) becomes one district issue; a
participation request is refused until intake's consent event arrives.
"""

from __future__ import annotations

import socket
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from tsunagu_events import EventEnvelope, from_kafka, to_kafka
from tsunagu_events.contracts.common import ConsultationCategory, Sealed
from tsunagu_events.contracts.intake import ConsentGiven, ConsentScope, PersonRegistered
from tsunagu_events.contracts.referral import DecisionKind, MeetingDecisionMade
from tsunagu_events.registry import EventPayload, schema_id
from tsunagu_events.topics import dlq_topic, events_topic
from tsunagu_platform.auth import Role, mint
from tsunagu_platform.kafka import ensure_topics

from .processes import Process, eventually

pytestmark = pytest.mark.integration

KEY = "integration-resources-signing-key-0123456789"
TENANT = "131121"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envelope(
    payload: EventPayload, stream: str, source: str, *, version: int = 1, agency: str | None = None
) -> EventEnvelope:
    return EventEnvelope(
        id=str(uuid.uuid4()),
        source=source,
        type=payload.event_type,
        time=datetime.now(UTC),
        subject=stream,
        dataschema=schema_id(payload.event_type, payload.version),
        tenant=TENANT,
        streamid=stream,
        streamversion=version,
        correlationid=str(uuid.uuid4()),
        actoragency=agency,
        actorstaff="it" if agency else None,
        dataversion=payload.version,
        prevhash="0" * 64,
        chainhash="0" * 64,
        data=payload.to_data(),
    )


async def publish(bootstrap: str, topic: str, event: EventEnvelope) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        key, headers, value = to_kafka(event)
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def published_issue(bootstrap: str, decision_id: str) -> EventEnvelope:
    """The DistrictIssueRaised the service's relay published for the decision (binary CloudEvents)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(events_topic("resources"), bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    envelope = from_kafka(list(record.headers or ()), record.value).envelope
                    if (
                        envelope.type == "tsunagu.resources.DistrictIssueRaised"
                        and envelope.data.get("decision_id") == decision_id
                    ):
                        return envelope
    finally:
        await consumer.stop()
    raise AssertionError(f"no DistrictIssueRaised for {decision_id} on {events_topic('resources')}")


@pytest.fixture
async def service(database_url: str, kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    topics = [events_topic(s) for s in ("referral", "intake", "resources")]
    await ensure_topics(kafka_bootstrap, topics + [dlq_topic(t) for t in topics], partitions=3)
    port = free_port()
    process = Process(
        [sys.executable, "-m", "tsunagu_resources", "serve"],
        tmp_path,
        "resources",
        env={
            "PORT": str(port),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DATABASE_URL": database_url,
            "TSUNAGU_VAR_DIR": str(tmp_path / "var"),
            "TSUNAGU_TOKEN_SIGNING_KEY": KEY,
        },
    ).start()
    token = mint(KEY, tenant=TENANT, agency="ikejiri.welfare_council_office", role=Role.STAFF, staff="it")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/health/ready")).status_code == 200
            except httpx.TransportError:
                return False

        try:
            await eventually(ready, timeout=60, what="resources ready")
        except AssertionError:
            process.stop()
            raise AssertionError(process.output()[-3000:]) from None
        try:
            yield client
        finally:
            assert process.stop() in (0, -15), process.output()[-3000:]


async def test_meeting_decision_becomes_a_district_issue_and_consent_unlocks_participation(
    service: httpx.AsyncClient, kafka_bootstrap: str
) -> None:
    decision_id = f"decision-{uuid.uuid4()}"
    decision = MeetingDecisionMade(
        meeting_id=f"meeting-{uuid.uuid4()}",
        decision_id=decision_id,
        kind=DecisionKind.DEVELOP_RESOURCE,
        district_id="ikejiri",
        title="買物に困る高齢者が多い",
        categories=[ConsultationCategory.ELDERLY_CARE],
        gap_need=True,
        decided_at=datetime(2021, 6, 1, 10, 0, tzinfo=UTC),
    )
    event = envelope(decision, f"meeting-{uuid.uuid4()}", "/tsunagu/131121/referral")
    await publish(kafka_bootstrap, events_topic("referral"), event)
    await publish(kafka_bootstrap, events_topic("referral"), event)  # redelivered

    found: list[dict[str, Any]] = []

    async def issue_appeared() -> bool:
        response = await service.get("/issues", params={"decision_id": decision_id})
        found[:] = response.json()
        return bool(found)

    await eventually(issue_appeared, timeout=60, what="the district issue")
    issue = (await service.get(f"/issues/{found[0]['issue_id']}")).json()
    assert issue["source"]["value"] == "four_party_meeting"
    assert issue["district_id"] == "ikejiri"
    taken = await service.post(f"/issues/{issue['issue_id']}/take-up", json={"taken_up_on": "2021-06-20"})
    assert taken.status_code == 200, taken.text
    assert len((await service.get("/issues", params={"decision_id": decision_id})).json()) == 1
    published = await published_issue(kafka_bootstrap, decision_id)
    assert published.streamid == issue["issue_id"]
    assert published.data["source"] == "four_party_meeting"

    resource = await service.post(
        "/resources",
        json={
            "district_id": "ikejiri",
            "kind": "salon",
            "organization_name": "池尻町会",
            "service_name": "サロン",
            "effective_on": "2021-04-01",
        },
    )
    assert resource.status_code == 201, resource.text
    person = f"person-{uuid.uuid4()}"
    body = {"person_id": person, "resource_id": resource.json()["resource_id"], "started_on": "2021-09-01"}
    # Intake registered the person at the caller's window: it serves the person, consent is still needed.
    sealed = Sealed(kid=f"intake/{person}/1", nonce="AAAAAAAAAAAAAAAA", ct="c2VjcmV0")
    registered = PersonRegistered(person_id=person, district_id="ikejiri", name=sealed)
    intake_source = "/tsunagu/131121/intake"
    await publish(
        kafka_bootstrap,
        events_topic("intake"),
        envelope(registered, person, intake_source, agency="ikejiri.welfare_council_office"),
    )
    answers: list[httpx.Response] = []

    async def refused_for_consent() -> bool:
        answers[:] = [await service.post("/participations", json=body)]
        return bool(answers[0].json().get("code") == "consent_required")

    await eventually(refused_for_consent, timeout=60, what="the person registered at the window")
    refused = answers[0]
    assert refused.status_code == 403
    assert refused.json()["code"] == "consent_required"
    consent = ConsentGiven(
        consent_id=f"consent-{uuid.uuid4()}",
        person_id=person,
        scope=ConsentScope.PARTICIPATION,
        given_at=datetime(2021, 8, 1, tzinfo=UTC),
        recorded_by_agency="ikejiri.community_center",
    )
    await publish(kafka_bootstrap, events_topic("intake"), envelope(consent, person, intake_source, version=2))

    async def allowed() -> bool:
        return (await service.post("/participations", json=body)).status_code == 201

    await eventually(allowed, timeout=60, what="participation after consent")
