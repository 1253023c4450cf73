"""The referral service as a real process on the real broker, on SQLite and PostgreSQL:
the consent gate driven by intake's events, the whole loop published on
tsunagu.referral.events, a four-party decision for resources, and the overdue clock
emitting one ReferralOverdue across process restarts."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select
from tsunagu_events import EventEnvelope, EventPayload, from_kafka, to_kafka
from tsunagu_events.chain import GENESIS_HASH, chain_hash
from tsunagu_events.contracts.common import JST, Sealed
from tsunagu_events.contracts.intake import ConsentGiven, ConsentScope, PersonRegistered
from tsunagu_events.registry import schema_id
from tsunagu_events.topics import events_topic
from tsunagu_platform.auth import Role, mint
from tsunagu_platform.db import create_engine
from tsunagu_platform.tables import events
from tsunagu_platform.tansu import free_port

from .processes import Process, eventually, run

pytestmark = pytest.mark.integration

KEY = "referral-integration-signing-key-0123456789abcdef"
CC = "ikejiri.community_center"
POVERTY = "specialist.poverty_support"


def headers(agency: str, role: Role = Role.STAFF) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(KEY, tenant='131121', agency=agency, role=role, staff='it-staff')}"}


class Service:
    """`python -m tsunagu_referral serve` on a free port, restartable with another clock offset."""

    def __init__(self, tmp_path: Path, database_url: str, bootstrap: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.process: Process | None = None
        self.port = 0
        self.starts = 0

    def env(self, offset_days: float) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "TSUNAGU_VAR_DIR": str(self.tmp_path / "var"),
            "TSUNAGU_TOKEN_SIGNING_KEY": KEY,
            "TSUNAGU_REFERRAL_OVERDUE_INTERVAL": "0.3",
            "TSUNAGU_REFERRAL_CLOCK_OFFSET_DAYS": str(offset_days),
            "TSUNAGU_TOPIC_PARTITIONS": "1",
        }

    async def start(self, offset_days: float = 0) -> None:
        self.port = free_port()
        self.starts += 1
        env = {**self.env(offset_days), "PORT": str(self.port)}
        self.process = Process(
            [sys.executable, "-m", "tsunagu_referral", "serve"], self.tmp_path, f"referral-{self.starts}", env
        ).start()

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{self.url}/health/ready", timeout=2)).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            await eventually(ready, timeout=60, what="referral ready")
        except AssertionError:
            raise AssertionError(self.process.output()[-3000:]) from None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)


@pytest.fixture
def service(tmp_path: Path, database_url: str, kafka_bootstrap: str) -> Iterator[Service]:
    svc = Service(tmp_path, database_url, kafka_bootstrap)
    try:
        yield svc
    finally:
        svc.stop()


async def publish_registration(bootstrap: str, person_id: str) -> None:
    """The person registered at CC's window (version 1 of the person's stream): CC serves them."""
    name = Sealed(kid=f"intake/{person_id}/1", nonce="AAAAAAAAAAAAAAAA", ct="c2VhbGVk")
    await publish_intake(bootstrap, PersonRegistered(person_id=person_id, name=name), person_id, 1, actor=CC)


async def publish_consent(bootstrap: str, person_id: str) -> None:
    payload = ConsentGiven(
        consent_id=f"consent-{uuid.uuid4()}",
        person_id=person_id,
        scope=ConsentScope.REFERRAL,
        given_at=datetime.now(UTC),
        recorded_by_agency=CC,
    )
    await publish_intake(bootstrap, payload, person_id, 2)


_HEADS: dict[str, str] = {}
"""The chain hash of the last event published per person stream, as intake's store keeps it."""


async def publish_intake(
    bootstrap: str, payload: EventPayload, person_id: str, version: int, actor: str | None = None
) -> None:
    """Publish an intake event as intake's relay would: its stream's next version, hash-chained."""
    previous = _HEADS.get(person_id, GENESIS_HASH)
    envelope = EventEnvelope(
        id=str(uuid.uuid4()),
        source="/tsunagu/131121/intake",
        type=payload.event_type,
        time=datetime.now(UTC),
        dataschema=schema_id(payload.event_type, payload.version),
        tenant="131121",
        streamid=person_id,
        streamversion=version,
        correlationid=str(uuid.uuid4()),
        actoragency=actor,
        actorstaff="intake-staff" if actor else None,
        dataversion=payload.version,
        prevhash=previous,
        data=payload.to_data(),
    )
    envelope = envelope.model_copy(update={"chainhash": chain_hash(previous, envelope)})
    _HEADS[person_id] = envelope.chainhash or ""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        key, kafka_headers, value = to_kafka(envelope)
        await producer.send_and_wait(events_topic("intake"), value, key=key, headers=kafka_headers)
    finally:
        await producer.stop()


async def published(bootstrap: str, streams: set[str], wanted: int, timeout: float = 30) -> list[EventEnvelope]:
    """Events of these streams on tsunagu.referral.events, read from the beginning."""
    consumer = AIOKafkaConsumer(
        events_topic("referral"), bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[EventEnvelope] = []
    try:

        async def enough() -> bool:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for r in records:
                    envelope = from_kafka(tuple((k, v) for k, v in (r.headers or ())), r.value).envelope
                    if envelope.streamid in streams:
                        found.append(envelope)
            return len(found) >= wanted

        await eventually(enough, timeout=timeout, what=f"{wanted} published events")
    finally:
        await consumer.stop()
    return found


def referral_body(person_id: str, due_on: str) -> dict[str, Any]:
    return {"person_id": person_id, "to_agency_id": POVERTY, "categories": ["poverty"], "due_on": due_on}


async def count_overdue(database_url: str, stream: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = select(func.count()).where(
                events.c.stream_id == stream, events.c.event_type == "tsunagu.referral.ReferralOverdue"
            )
            return int(await conn.scalar(query) or 0)
    finally:
        await engine.dispose()


async def test_referral_service_end_to_end_across_restarts(
    service: Service, kafka_bootstrap: str, database_url: str
) -> None:
    """One process start per phase (joining consumer groups dominates the test's time)."""
    await service.start()
    person = f"person-{uuid.uuid4()}"
    in_a_week = (datetime.now(JST) + timedelta(days=7)).date().isoformat()
    today = datetime.now(JST).date().isoformat()
    async with service.client() as client:
        # Consent gate: refused before intake's ConsentGiven is consumed, accepted after. The
        # referring window serves the person once their registration is consumed.
        await publish_registration(kafka_bootstrap, person)
        refusals: list[httpx.Response] = []

        async def registration_consumed() -> bool:
            refusals.append(await client.post("/referrals", json=referral_body(person, in_a_week), headers=headers(CC)))
            return refusals[-1].status_code != 403

        await eventually(registration_consumed, timeout=30, what="the person's registration consumed")
        refused = refusals[-1]
        assert refused.status_code == 409
        assert refused.json()["reason"] == "consent_required"
        await publish_consent(kafka_bootstrap, person)
        created: dict[str, Any] = {}

        async def consent_consumed() -> bool:
            response = await client.post("/referrals", json=referral_body(person, in_a_week), headers=headers(CC))
            created.update(response.json())
            return response.status_code == 201

        await eventually(consent_consumed, timeout=30, what="referral accepted once consent is consumed")
        looped = created["referral_id"]
        assert (await client.post(f"/referrals/{looped}/accept", headers=headers(POVERTY))).status_code == 200
        completed = await client.post(
            f"/referrals/{looped}/complete",
            json={"outcome": "got_help", "feedback": "つながった"},
            headers=headers(POVERTY),
        )
        assert completed.status_code == 200
        late = await client.post("/referrals", json=referral_body(person, today), headers=headers(CC))
        assert late.status_code == 201, late.text
        late_id = late.json()["referral_id"]

        meeting = await client.post(
            "/meetings",
            json={"kind": "four_party", "district_id": "ikejiri", "scheduled_for": "2026-04-15T10:00:00+09:00"},
            headers=headers(CC),
        )
        mid = meeting.json()["meeting_id"]
        held = await client.post(f"/meetings/{mid}/held", json={"attendee_agency_ids": [CC]}, headers=headers(CC))
        assert held.status_code == 200, held.text
        decided = await client.post(
            f"/meetings/{mid}/decisions",
            json={"kind": "develop_resource", "title": "居場所づくり", "categories": ["isolation"], "gap_need": True},
            headers=headers(CC),
        )
        assert decided.status_code == 201, decided.text
    service.stop()

    # Restarted two days later: the scheduled job finds the late referral overdue, once.
    await service.start(offset_days=2)
    async with service.client() as client:

        async def listed() -> bool:
            response = await client.get("/inbox/overdue", headers=headers(CC))
            return [r["referral_id"] for r in response.json()] == [late_id]

        await eventually(listed, timeout=30, what="overdue inbox")
        again = await client.post("/overdue/run", headers=headers("setagaya.branch_office", Role.ADMIN))
        assert again.json() == {"emitted": 0}
    service.stop()

    # And once more as a one-off process (the CLI) after a further restart.
    once = run([sys.executable, "-m", "tsunagu_referral", "overdue"], env={**service.env(4), "PORT": str(free_port())})
    assert once.returncode == 0, once.stderr
    assert "0 referral(s) became overdue" in once.stdout
    assert await count_overdue(database_url, late_id) == 1

    seen = await published(kafka_bootstrap, {looped, late_id, mid}, wanted=8)
    types = [(e.streamid, e.type.rsplit(".", 1)[1]) for e in seen]
    assert [t for s, t in types if s == looped] == ["ReferralRequested", "ReferralAccepted", "ReferralCompleted"]
    assert [t for s, t in types if s == late_id] == ["ReferralRequested", "ReferralOverdue"]
    decision = next(e for e in seen if e.type.endswith("MeetingDecisionMade"))
    assert decision.data["kind"] == "develop_resource"
    assert decision.data["district_id"] == "ikejiri"
    assert decision.data["gap_need"] is True
