"""The intake service as a real process on the real broker, on SQLite and PostgreSQL: consultations over
HTTP and from agency systems (binary and structured CloudEvents), poison messages parked in the DLQ with
the reason, duplicates ignored, and an erasure that leaves nothing readable on the intake topic."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from tsunagu_events import EventEnvelope, to_kafka
from tsunagu_events.topics import INTAKE_INBOUND, dlq_topic, events_topic
from tsunagu_platform.auth import Role, mint
from tsunagu_platform.kafka import ensure_topics
from tsunagu_platform.tansu import free_port

from .processes import Process, eventually, run

pytestmark = pytest.mark.integration

KEY = "intake-integration-signing-key-0123456789abcdef"
CC = "ikejiri.community_center"


def auth(role: Role = Role.STAFF, agency: str = CC) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(KEY, tenant='131121', agency=agency, role=role, staff='it-staff')}"}


def service_env(tmp_path: Path, database_url: str, bootstrap: str, port: int = 0) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TSUNAGU_VAR_DIR": str(tmp_path / "var"),
        "TSUNAGU_TOKEN_SIGNING_KEY": KEY,
        "TSUNAGU_TOPIC_PARTITIONS": "1",
        "PORT": str(port),
    }


async def read_topic(bootstrap: str, topic: str, rounds: int = 8) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        records: list[Any] = []
        for _ in range(rounds):
            batch = await consumer.getmany(timeout_ms=250)
            records += [r for items in batch.values() for r in items]
        return records
    finally:
        await consumer.stop()


def reported(marker: str, **extra: Any) -> EventEnvelope:
    data = {
        "window_id": CC,
        "received_at": "2026-06-01T09:30:00+09:00",
        "channel": "phone",
        "consulted_by": "agency",
        "categories": ["poverty", "housing"],
        "outcome": "continued_support",
        "summary": f"summary {marker}",
        "person": {"name": f"name {marker}"},
    } | extra
    return EventEnvelope(
        id=str(uuid.uuid4()),
        source=f"/agency/{data['window_id']}/it-{marker}",  # the window's own system
        type="tsunagu.agency.ConsultationReported",
        time=datetime.now(UTC),
        tenant="131121",
        data=data,
    )


async def test_intake_end_to_end_on_the_real_broker(database_url: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex[:10]
    port = free_port()
    env = service_env(tmp_path, database_url, kafka_bootstrap, port)
    await ensure_topics(kafka_bootstrap, [INTAKE_INBOUND, dlq_topic(INTAKE_INBOUND)], partitions=1)
    service = Process([sys.executable, "-m", "tsunagu_intake", "serve"], tmp_path, "intake", env).start()
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/health/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, timeout=60, what="intake ready")
            # Over HTTP.
            person = (
                await client.post("/persons", json={"name": f"name {marker}", "district_id": "ikejiri"}, headers=auth())
            ).json()["id"]
            r = await client.post(
                "/consultations",
                json={
                    "window_id": CC,
                    "received_at": "2026-05-01T10:00:00+09:00",
                    "channel": "walk_in",
                    "consulted_by": "person",
                    "categories": ["withdrawal"],
                    "outcome": "continued_support",
                    "person_id": person,
                    "summary": f"summary {marker}",
                },
                headers=auth(),
            )
            assert r.status_code == 201, r.text
            # From agency systems: binary, structured, a duplicate, and poison.
            binary, structured = reported(marker), reported(marker, person=None)
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                key, headers, value = to_kafka(binary)
                await producer.send_and_wait(INTAKE_INBOUND, value, key=key, headers=headers)
                await producer.send_and_wait(INTAKE_INBOUND, value, key=key, headers=headers)
                body = json.dumps(structured.to_structured(), default=str).encode()
                ce_json = [("content-type", b"application/cloudevents+json")]
                await producer.send_and_wait(INTAKE_INBOUND, body, headers=ce_json)
                await producer.send_and_wait(INTAKE_INBOUND, f"garbage {marker}".encode(), headers=ce_json)
                bad = reported(marker, window_id="nowhere.window")
                key, headers, value = to_kafka(bad)
                await producer.send_and_wait(INTAKE_INBOUND, value, key=key, headers=headers)
            finally:
                await producer.stop()

            async def three_consultations() -> bool:
                counts = (await client.get("/consultations/counts", headers=auth())).json()
                return bool(counts["total"] == 3)

            await eventually(three_consultations, timeout=30, what="HTTP + 2 agency consultations")
            parked = [
                r
                for r in await read_topic(kafka_bootstrap, dlq_topic(INTAKE_INBOUND))
                if marker.encode() in (r.value or b"")
            ]
            reasons = sorted(dict(r.headers)["dlq_reason"].decode() for r in parked)
            assert reasons == ["handler_error", "undecodable"], reasons

            counts_before = (await client.get("/consultations/counts", headers=auth())).json()
            r = await client.post(f"/persons/{person}/erasure", headers=auth(Role.ADMIN))
            assert r.status_code == 200, r.text
            gone = (await client.get(f"/persons/{person}", headers=auth(Role.ADMIN))).json()
            assert gone["erased"] is True
            assert gone["name"] is None
            assert (await client.get("/consultations/counts", headers=auth())).json() == counts_before

            async def erased_published() -> bool:
                records = await read_topic(kafka_bootstrap, events_topic("intake"), rounds=3)
                return any(
                    dict(r.headers).get("ce_type") == b"tsunagu.intake.PersonErased"
                    and person.encode() in (r.value or b"")
                    for r in records
                )

            await eventually(erased_published, timeout=30, what="PersonErased on the intake topic")
            published = await read_topic(kafka_bootstrap, events_topic("intake"))
            mine = [r for r in published if person.encode() in (r.value or b"")]
            assert len(mine) >= 3
            assert all(marker.encode() not in (r.value or b"") for r in mine)
    finally:
        service.stop()
    erase_again = run([sys.executable, "-m", "tsunagu_intake", "erase", "--person", person], env=env)
    assert erase_again.returncode == 2, erase_again.stdout + erase_again.stderr
