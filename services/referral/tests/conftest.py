"""Component-test harness: the referral app on faststream's TestKafkaBroker with a fake clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaMessage
from faststream.kafka.testing import TestKafkaBroker
from tsunagu_events import EventEnvelope, EventPayload, from_kafka, registry, to_kafka
from tsunagu_events.chain import GENESIS_HASH, chain_hash
from tsunagu_events.contracts.common import Sealed
from tsunagu_events.contracts.intake import (
    Approach,
    CaseOpened,
    ConsentGiven,
    ConsentScope,
    ConsentWithdrawn,
    PersonErased,
    PersonRegistered,
)
from tsunagu_events.registry import schema_id
from tsunagu_events.topics import events_topic
from tsunagu_platform.auth import Role, mint
from tsunagu_referral.app import create_app
from tsunagu_referral.settings import ReferralSettings

SIGNING_KEY = "referral-component-test-signing-key-0123456789"
TENANT = "131121"
IKEJIRI_CC = "ikejiri.community_center"
IKEJIRI_CSC = "ikejiri.comprehensive_support_center"
POVERTY = "specialist.poverty_support"


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, days: float) -> None:
        self.now += timedelta(days=days)


def token(agency: str, role: Role = Role.STAFF, staff: str = "staff-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(SIGNING_KEY, tenant=TENANT, agency=agency, role=role, staff=staff)}"}


@dataclass
class Harness:
    client: httpx.AsyncClient
    broker: Any
    clock: FakeClock
    app: Any
    published: list[EventEnvelope] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)

    async def intake(self, payload: EventPayload, stream: str, actor_agency: str | None = None) -> None:
        """Publish an intake event as intake's relay would (next version of its stream, hash-chained)."""
        version = self.versions.get(stream, 0) + 1
        self.versions[stream] = version
        previous = self.heads.get(stream, GENESIS_HASH)
        draft = EventEnvelope(
            id=str(uuid.uuid4()),
            source=f"/tsunagu/{TENANT}/intake",
            type=payload.event_type,
            time=datetime.now(UTC),
            subject=stream,
            dataschema=schema_id(payload.event_type, payload.version),
            tenant=TENANT,
            streamid=stream,
            streamversion=version,
            correlationid=str(uuid.uuid4()),
            dataversion=payload.version,
            prevhash=previous,
            data=payload.to_data(),
            actoragency=actor_agency,
            actorstaff="intake-staff" if actor_agency else None,
        )
        envelope = draft.model_copy(update={"chainhash": chain_hash(previous, draft)})
        self.heads[stream] = envelope.chainhash or ""
        await self.publish_intake(envelope)

    async def publish_intake(self, envelope: EventEnvelope) -> None:
        key, headers, value = to_kafka(envelope)
        await self.broker.publish(value, events_topic("intake"), key=key, headers={k: v.decode() for k, v in headers})

    async def register(self, person_id: str, agency: str = IKEJIRI_CC) -> None:
        """The person registered at `agency`'s window (the agency then serves them)."""
        name = Sealed(kid=f"intake/{person_id}/1", nonce="AAAAAAAAAAAAAAAA", ct="c2VhbGVk")
        await self.intake(PersonRegistered(person_id=person_id, name=name), person_id, actor_agency=agency)

    async def open_case(self, person_id: str, lead_agency: str, case_id: str | None = None) -> str:
        """A companion-support case of the person led by `lead_agency`."""
        case_id = case_id or f"case-{uuid.uuid4()}"
        await self.intake(
            CaseOpened(
                case_id=case_id,
                person_id=person_id,
                lead_agency_id=lead_agency,
                district_id="ikejiri",
                approach=Approach.PROBLEM_SOLVING,
                opened_at=self.clock(),
            ),
            case_id,
            actor_agency=lead_agency,
        )
        return case_id

    async def give_consent(self, person_id: str, agency_ids: list[str] | None = None) -> str:
        consent_id = f"consent-{uuid.uuid4()}"
        await self.intake(
            ConsentGiven(
                consent_id=consent_id,
                person_id=person_id,
                scope=ConsentScope.REFERRAL,
                agency_ids=agency_ids or [],
                given_at=self.clock(),
                recorded_by_agency=IKEJIRI_CC,
            ),
            person_id,
        )
        return consent_id

    async def withdraw_consent(self, person_id: str, consent_id: str) -> None:
        await self.intake(
            ConsentWithdrawn(
                consent_id=consent_id, person_id=person_id, withdrawn_at=self.clock(), recorded_by_agency=IKEJIRI_CC
            ),
            person_id,
        )

    async def erase(self, person_id: str) -> None:
        await self.intake(PersonErased(person_id=person_id, erased_at=self.clock()), person_id)

    async def events_of(self, event_type: str, count: int, timeout: float = 5.0) -> list[EventEnvelope]:
        """Wait until the relay has published `count` events of a type; return them all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [e for e in self.published if e.type == event_type]
            if len(found) >= count or loop.time() > deadline:
                return found
            await asyncio.sleep(0.02)

    def payloads(self, event_type: str) -> list[EventPayload]:
        return [registry.decode(e) for e in self.published if e.type == event_type]


def new_person() -> str:
    return f"person-{uuid.uuid4()}"


async def start_harness(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    settings = ReferralSettings(
        broker_mode="memory",
        var_dir=tmp_path,
        token_signing_key=SIGNING_KEY,
        overdue_interval_seconds=0,
    )
    app = create_app(settings, clock=clock)
    runtime = app.state.runtime
    published: list[EventEnvelope] = []

    async def raw(message: Any) -> Any:
        return message.body

    @runtime.broker.subscriber(events_topic("referral"), group_id="component-capture", decoder=raw)
    async def capture(body: Any, message: KafkaMessage) -> None:
        raw = message.raw_message
        published.append(from_kafka(tuple((k, v) for k, v in raw.headers), raw.value).envelope)

    async with TestKafkaBroker(runtime.broker) as broker:
        await runtime.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
            try:
                yield Harness(client, broker, clock, app, published)
            finally:
                await runtime.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 4, 1, 1, 0, tzinfo=UTC))


@pytest.fixture
async def harness(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    async for h in start_harness(tmp_path, clock):
        yield h
