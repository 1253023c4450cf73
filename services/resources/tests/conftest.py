"""Component fixtures: the resources app on faststream's in-memory TestKafkaBroker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from tsunagu_events import EventEnvelope, to_kafka
from tsunagu_events.registry import EventPayload, schema_id
from tsunagu_platform.auth import Role, mint
from tsunagu_resources.app import create_app
from tsunagu_resources.settings import ResourcesSettings

KEY = "component-test-signing-key-0123456789abcdef"
TENANT = "131121"
WINDOW = "ikejiri.welfare_council_office"


def token(agency: str = WINDOW, role: Role = Role.STAFF) -> str:
    return mint(KEY, tenant=TENANT, agency=agency, role=role, staff="staff-1")


def auth(agency: str = WINDOW, role: Role = Role.STAFF) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(agency, role)}"}


def envelope(payload: EventPayload, *, stream: str, version: int, source: str, tenant: str = TENANT) -> EventEnvelope:
    return EventEnvelope(
        id=str(uuid.uuid4()),
        source=source,
        type=payload.event_type,
        time=datetime.now(UTC),
        subject=stream,
        dataschema=schema_id(payload.event_type, payload.version),
        tenant=tenant,
        streamid=stream,
        streamversion=version,
        correlationid=str(uuid.uuid4()),
        dataversion=payload.version,
        prevhash="0" * 64,
        chainhash="0" * 64,
        data=payload.to_data(),
    )


@dataclass
class Harness:
    client: httpx.AsyncClient
    broker: Any
    app: Any

    async def publish(self, topic: str, event: EventEnvelope) -> None:
        key, headers, value = to_kafka(event)
        await self.broker.publish(value, topic, key=key, headers=dict((k, v.decode()) for k, v in headers))


@pytest.fixture
def settings_factory(tmp_path: Path, database_url: str) -> Callable[..., ResourcesSettings]:
    """Settings on each database (a SQLite file, then a fresh PostgreSQL database)."""

    def make(**overrides: Any) -> ResourcesSettings:
        return ResourcesSettings(
            broker_mode="memory", var_dir=tmp_path, database_url=database_url, token_signing_key=KEY, **overrides
        )

    return make


@pytest.fixture
async def harness(settings_factory: Callable[..., ResourcesSettings]) -> AsyncIterator[Harness]:
    app = create_app(settings_factory())
    runtime = app.state.runtime
    async with TestKafkaBroker(runtime.broker) as broker:
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://resources", headers=auth()) as client:
                yield Harness(client, broker, app)
        finally:
            await runtime.stop()
