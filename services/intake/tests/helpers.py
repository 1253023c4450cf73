"""Shared helpers of the intake tests: tokens, settings and the running app."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from tsunagu_events import EventEnvelope, to_kafka
from tsunagu_events.topics import INTAKE_INBOUND
from tsunagu_intake.settings import IntakeSettings
from tsunagu_intake.use_cases import Intake
from tsunagu_platform.auth import Role, mint
from tsunagu_platform.kafka import OutgoingMessage
from tsunagu_platform.runtime import ServiceRuntime

KEY = "component-test-signing-key-0123456789abcdef"
WINDOW = "ikejiri.community_center"
CSC = "ikejiri.comprehensive_support_center"


def token(role: Role = Role.STAFF, agency: str = WINDOW, staff: str = "staff-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(KEY, tenant='131121', agency=agency, role=role, staff=staff)}"}


@dataclass
class Running:
    app: FastAPI
    runtime: ServiceRuntime
    intake: Intake
    client: httpx.AsyncClient
    broker: Any
    captured: Captured


def settings_for(tmp_path: Path, database_url: str | None = None) -> IntakeSettings:
    return IntakeSettings(
        broker_mode="memory",
        var_dir=tmp_path,
        database_url=database_url,
        token_signing_key=KEY,
        log_level="WARNING",
    )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout}s")


@dataclass
class Captured:
    """Everything the service published (relay and DLQ), as the topics would hold it."""

    messages: list[OutgoingMessage] = field(default_factory=list)

    def on(self, topic: str) -> list[OutgoingMessage]:
        return [m for m in self.messages if m.topic == topic]


def capture(runtime: ServiceRuntime) -> Captured:
    captured = Captured()
    publisher = runtime.publisher
    original = publisher.publish

    async def publish(messages: Sequence[OutgoingMessage]) -> None:
        captured.messages.extend(messages)
        await original(messages)

    publisher.publish = publish  # type: ignore[method-assign]
    return captured


def agency_source(agency: str, system: str | None = None) -> str:
    """The CloudEvents source of an agency's sending system, as the reference data binds it to the agency."""
    return f"/agency/{agency}" + (f"/{system}" if system else "")


def agency_event(
    type_: str, data: dict[str, Any], *, source: str | None = None, event_id: str | None = None
) -> EventEnvelope:
    """An agency's report; by default from the system of the agency it reports for (its window or agency_id)."""
    agency = data.get("window_id") or data.get("agency_id") or WINDOW
    return EventEnvelope(
        id=event_id or str(uuid.uuid4()),
        source=source or agency_source(str(agency)),
        type=type_,
        time=datetime.now(UTC),
        tenant="131121",
        data=data,
    )


async def send_binary(broker: Any, envelope: EventEnvelope, topic: str = INTAKE_INBOUND) -> None:
    key, headers, value = to_kafka(envelope)
    await send_raw(broker, value, headers, topic=topic, key=key)


async def send_structured(broker: Any, envelope: EventEnvelope, topic: str = INTAKE_INBOUND) -> None:
    body = json.dumps(envelope.to_structured(), default=str).encode()
    await send_raw(broker, body, [("content-type", b"application/cloudevents+json")], topic=topic)


async def send_raw(
    broker: Any,
    value: bytes,
    headers: Sequence[tuple[str, bytes]],
    *,
    topic: str = INTAKE_INBOUND,
    key: bytes | None = None,
) -> None:
    await broker.publish(value, topic, key=key, headers={k: v.decode() for k, v in headers})


def consultation_reported(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "window_id": WINDOW,
        "received_at": "2026-06-01T09:30:00+09:00",
        "channel": "phone",
        "consulted_by": "agency",
        "categories": ["poverty", "health"],
        "outcome": "continued_support",
        "summary": "agency summary text",
        "person": {"name": "山田 花子", "phone": "03-0000-0000"},
    }
    data.update(overrides)
    return data
