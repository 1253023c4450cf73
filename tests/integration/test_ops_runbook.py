"""The runbook's commands (docs/operations.md) that run locally, against the embedded default:
republish after broker loss, DLQ replay, projection rebuild and hash-chain verification."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from tsunagu_events import to_kafka
from tsunagu_events.contracts.example import TallyRecorded
from tsunagu_events.topics import EXAMPLE_TOPIC, dlq_topic
from tsunagu_platform.db import create_engine
from tsunagu_platform.example import TallyTotals, append_tallies, migrate, read_totals
from tsunagu_platform.kafka import AiokafkaPublisher, ensure_topics
from tsunagu_platform.projection import ProjectionManager
from tsunagu_platform.relay import OutboxRelay
from tsunagu_platform.store import EventContext, EventStore, NewEvent
from tsunagu_platform.tables import outbox

from .processes import run

pytestmark = pytest.mark.integration


def ops(*args: str, bootstrap: str) -> list[str]:
    return [sys.executable, "-m", "tsunagu_platform.ops", "--bootstrap", bootstrap, *args]


async def relay_everything(database_url: str, bootstrap: str) -> int:
    engine = create_engine(database_url)
    publisher = AiokafkaPublisher(bootstrap)
    await publisher.start()
    try:
        relay, total = OutboxRelay(engine, publisher, service="ops-test"), 0
        while published := await relay.publish_pending():
            total += published
        return total
    finally:
        await publisher.stop()
        await engine.dispose()


async def test_republish_sends_the_whole_history_again_in_order(tmp_path: Path, kafka_bootstrap: str) -> None:
    url = f"sqlite:///{tmp_path}/svc.db"
    engine = create_engine(url)
    await migrate(engine)
    topic = f"ops.{uuid.uuid4().hex[:8]}.events"
    await ensure_topics(kafka_bootstrap, [topic])
    await append_tallies(engine, streams=2, events=3, topic=topic)
    assert await relay_everything(url, kafka_bootstrap) == 6
    result = run(ops("republish", "--database-url", url, bootstrap=kafka_bootstrap))
    assert result.returncode == 0, result.stderr
    assert "6 events queued for republishing" in result.stdout
    async with engine.connect() as conn:
        pending = await conn.scalar(select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None)))
    assert pending == 6
    assert await relay_everything(url, kafka_bootstrap) == 6
    await engine.dispose()


async def test_dlq_replay_returns_dead_letters_to_their_topic(tmp_path: Path, kafka_bootstrap: str) -> None:
    topic = f"ops.{uuid.uuid4().hex[:8]}.events"
    await ensure_topics(kafka_bootstrap, [topic, dlq_topic(topic)])
    engine = create_engine(f"sqlite:///{tmp_path}/svc.db")
    await migrate(engine)
    tally = TallyRecorded(window="w", count=1, category="general")
    context = EventContext(tenant="131121", source="/tsunagu/131121/example")
    stored = await EventStore(engine, topic=topic).append("w", 0, [NewEvent(tally)], context)
    key, headers, value = to_kafka(stored[0])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        dead = [*headers, ("dlq_reason", b"handler_error"), ("dlq_original_topic", topic.encode())]
        await producer.send_and_wait(dlq_topic(topic), value, key=key, headers=dead)
    finally:
        await producer.stop()
    dry = run(ops("dlq", "replay", "--topic", dlq_topic(topic), "--dry-run", bootstrap=kafka_bootstrap))
    assert dry.returncode == 0, dry.stderr
    assert "would replay 1" in dry.stdout
    real = run(ops("dlq", "replay", "--topic", dlq_topic(topic), bootstrap=kafka_bootstrap))
    assert real.returncode == 0, real.stderr
    assert "replayed 1" in real.stdout
    again = run(ops("dlq", "replay", "--topic", dlq_topic(topic), bootstrap=kafka_bootstrap))
    assert "replayed 0" in again.stdout
    await engine.dispose()


async def test_projection_rebuild_from_the_command_line_switches_generation(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    url = f"sqlite:///{tmp_path}/svc.db"
    engine = create_engine(url)
    await migrate(engine)
    await ensure_topics(kafka_bootstrap, [EXAMPLE_TOPIC])
    prefix = f"ops-{uuid.uuid4().hex[:6]}"
    await append_tallies(engine, streams=3, events=4, prefix=prefix)
    await relay_everything(url, kafka_bootstrap)
    result = run(
        ops(
            "projection",
            "rebuild",
            "--database-url",
            url,
            "--projection",
            "example.tally_totals",
            bootstrap=kafka_bootstrap,
        )
    )
    assert result.returncode == 0, result.stderr
    assert "rebuilt example.tally_totals as generation 2" in result.stdout
    assert "events" in result.stderr  # progress lines
    manager = ProjectionManager(engine, TallyTotals(), kafka_bootstrap)
    assert await manager.active_generation() == 2
    totals = await read_totals(engine, (await manager.tables())["totals"])
    assert {w: v for w, v in totals.items() if w.startswith(prefix)} == {f"{prefix}-{i}": (4, 4) for i in range(3)}
    unknown = run(
        ops("projection", "rebuild", "--database-url", url, "--projection", "nope", bootstrap=kafka_bootstrap)
    )
    assert unknown.returncode == 2
    await engine.dispose()
